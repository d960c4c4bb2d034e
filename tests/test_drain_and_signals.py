"""Nothing lost: requests in flight finish before the stop, and every way out saves."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import (
    BIN,
    RunningServer,
    data_files,
    free_port,
    measured_lines,
    server_argv,
    wait_in_flight,
)

PY = sys.executable


def line_of(folder: Path, text: str) -> int:
    return (folder / "plainapp.py").read_text().splitlines().index(text) + 1


@pytest.mark.parametrize("name", ["waitress-serve", "waitress.serve", "werkzeug-threaded"])
def test_requests_in_flight_finish_and_their_lines_are_saved(
    name: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = server_argv(name, port, module="plain_wsgi")
    server = servers(argv, cwd=plainapp, port=port).wait_listening()

    slow: dict[str, object] = {}

    def fetch_slow() -> None:
        answer = requests.get(f"{server.url}/slow", params="1.5", timeout=20)
        slow.update(status=answer.status_code, size=len(answer.content))

    client = threading.Thread(target=fetch_slow)
    client.start()
    wait_in_flight(server.url, 1)  # the slow request is inside the app now
    assert server.shutdown().status_code == 202
    assert server.shutdown().status_code == 202, "a second request while stopping is accepted too"
    client.join(timeout=20)
    assert slow == {"status": 200, "size": 200_000}
    assert server.wait(timeout=10) == 0, server.output()
    assert len(data_files(plainapp)) == 1, "one process, one data file"
    after_the_sleep = line_of(
        plainapp, '    return b"x" * 200_000  # big enough to span many socket writes'
    )
    assert after_the_sleep in measured_lines(plainapp, "plainapp")["plainapp.py"]


@pytest.mark.parametrize("name", ["waitress-serve", "werkzeug-threaded"])
def test_sigterm_saves_before_the_process_dies(
    name: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    server = servers(server_argv(name, port, module="plain_wsgi"), cwd=plainapp, port=port)
    server.wait_listening()
    assert server.get("/hello").text == "hello"
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=5) == 128 + signal.SIGTERM  # the shell's way to say "killed by it"
    hello = line_of(plainapp, '        body = b"hello"')
    assert hello in measured_lines(plainapp, "plainapp")["plainapp.py"]
    assert len(data_files(plainapp)) == 1


@pytest.mark.parametrize("name", ["waitress-serve", "werkzeug-threaded"])
def test_sigint_stops_and_saves_even_when_it_arrived_ignored(
    name: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    server = servers(server_argv(name, port, module="plain_wsgi"), cwd=plainapp, port=port)
    server.wait_listening()
    assert server.get("/hello").text == "hello"
    server.signal(signal.SIGINT)
    assert server.wait(timeout=5) == 0
    hello = line_of(plainapp, '        body = b"hello"')
    assert hello in measured_lines(plainapp, "plainapp")["plainapp.py"]
    assert len(data_files(plainapp)) == 1


def test_a_normal_interpreter_exit_saves_once(plainapp: Path) -> None:
    script = (
        "import plain_wsgi\n"
        "from werkzeug.test import Client\n"
        "assert Client(plain_wsgi.application).get('/hello').text == 'hello'\n"
    )
    done = subprocess.run(
        [PY, "-c", script],
        cwd=plainapp,
        env={"COVGUARD_TOKEN": "x" * 20, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert len(data_files(plainapp)) == 1
    hello = line_of(plainapp, '        body = b"hello"')
    assert hello in measured_lines(plainapp, "plainapp")["plainapp.py"]


@pytest.mark.core_independent
def test_an_unwritable_data_file_is_refused_at_start_up(plainapp: Path) -> None:
    (plainapp / "not-a-folder").write_text("")
    done = subprocess.run(
        [
            str(BIN / "waitress-serve"),
            f"--listen=127.0.0.1:{free_port()}",
            "plain_wsgi:application",
        ],
        cwd=plainapp,
        env={
            "COVGUARD_TOKEN": "x" * 20,
            "COVERAGE_FILE": "not-a-folder/.coverage",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("covguard: cannot write coverage data to ")
    assert "not-a-folder/.coverage" in done.stderr
    assert "set COVERAGE_FILE or [run] data_file to a writable location" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


THREAD_FIRST = """\
import threading
threading.Thread(target=threading.Event().wait, name="early", daemon=True).start()
import wsgi_covguard
wsgi_covguard.start()
from plainapp import app
application = wsgi_covguard.CovGuard(app)
"""


def test_threads_ctrace_cannot_measure_are_reported_once(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    (plainapp / "thread_first.py").write_text(THREAD_FIRST)
    port = free_port()
    argv = [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}", "thread_first:application"]
    env = {"COVERAGE_CORE": "ctrace"}
    server = servers(argv, cwd=plainapp, port=port, env=env).wait_listening()
    status = server.get("/__coverage__/status", headers={"Authorization": f"Bearer {server.token}"})
    warning = (
        "1 thread(s) were running before coverage started (early); the ctrace core does not"
        " measure"
        " them: start coverage first (the top of the entry point), or use Python 3.12+ for"
        " the sysmon core"
    )
    assert status.json()["warnings"] == [warning]
    assert server.output().count(f"covguard: {warning}") == 1
    assert server.shutdown().status_code == 202
    assert server.wait() == 0
