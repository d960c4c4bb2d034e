"""granian: its worker threads are measured, and one shutdown stops it through its master.

granian runs a WSGI app on threads its Rust runtime makes, which ctrace never reaches
by itself; the middleware hands each such thread coverage's tracer at its first request.
The lines saved for the same requests must equal waitress's: under ctrace (3.11, or
``--contexts``) and sysmon alike, from granian's own command line and ``covguard serve``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import coverage
import pytest
import requests
from live import BIN, TOKEN, CovguardServe, RunningServer, data_files, free_port, measured_lines

from wsgi_covguard.session import CoverageSession

# One worker computes the module's waitress_lines once for all its tests (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_granian")

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def drive(url: str) -> None:
    assert requests.get(url + "/hello", timeout=10).text == "hello"
    assert requests.get(url + "/counted", params="one", timeout=10).text == "counted"
    assert requests.get(url + "/slow", params="0", timeout=10).status_code == 200
    assert requests.get(url + "/nope", timeout=10).status_code == 404


@pytest.fixture(scope="module")
def waitress_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[int]]:
    folder = tmp_path_factory.mktemp("waitress")
    for app in (Path(__file__).parent / "apps").glob("*.py"):
        (folder / app.name).write_text(app.read_text())
    live = CovguardServe(["plainapp:app"], cwd=folder)
    try:
        drive(live.url)
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
    finally:
        live.stop()
    return measured_lines(folder, "plainapp")


def test_granians_command_line_measures_what_waitress_measures(
    plainapp: Path, servers: Callable[..., RunningServer], waitress_lines: dict[str, set[int]]
) -> None:
    port = free_port()
    argv = [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port",
            str(port), "--workers", "1", "plain_wsgi:application"]  # fmt: skip
    server = servers(argv, cwd=plainapp, port=port).wait_listening()  # started as `cmd &`
    drive(server.url)
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=10) == 0, server.output()
    assert "ERROR" not in server.output(), "granian's master stopped its worker itself"
    assert "Granian shutdown completed" in server.output()
    assert len(data_files(plainapp)) == 1
    assert measured_lines(plainapp, "plainapp") == waitress_lines


@pytest.mark.parametrize("core", [None, "ctrace"], ids=["default-core", "ctrace-contexts"])
def test_covguard_serve_granian_measures_what_waitress_measures(
    core: str | None, plainapp: Path, waitress_lines: dict[str, set[int]]
) -> None:
    # ctrace on every Python: granian's Rust-made threads are handed its tracer.
    args, env = (["--contexts"], {**os.environ, "COVERAGE_CORE": core}) if core else ([], None)
    live = CovguardServe(["plainapp:app", "--server", "granian", *args], cwd=plainapp, env=env)
    try:
        assert "(granian, 1 worker(s), pid " in live.ready_line
        drive(live.url)
        status = requests.get(live.url + "/__coverage__/status", headers=BEARER, timeout=10)
        expected_core = core or ("sysmon" if sys.version_info >= (3, 12) else "ctrace")
        assert status.json()["core"] == expected_core
        assert status.json()["warnings"] == []
        assert live.shutdown().status_code == 202
        assert live.wait(timeout=10) == 0, live.stderr
    finally:
        live.stop()
    assert "ERROR" not in live.stderr
    assert measured_lines(plainapp, "plainapp") == waitress_lines


def test_with_two_workers_each_saves_and_control_reaches_both(
    plainapp: Path, waitress_lines: dict[str, set[int]]
) -> None:
    live = CovguardServe(["plainapp:app", "--server", "granian", "--workers", "2"], cwd=plainapp)
    try:
        for _ in range(4):
            drive(live.url)
        saved = requests.post(live.url + "/__coverage__/save", headers=BEARER, timeout=30)
        assert saved.status_code == 200
        assert len(saved.json()["saved"]) == 2, "both workers saved"
        assert live.shutdown().status_code == 202
        assert live.wait(timeout=10) == 0, live.stderr
    finally:
        live.stop()
    assert "ERROR" not in live.stderr
    assert len(data_files(plainapp)) == 2, "one data file per worker"
    assert measured_lines(plainapp, "plainapp") == waitress_lines


def test_a_thread_that_cannot_be_measured_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Coverage that was never started has no tracer to hand a thread: one line, once."""
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"))
    session = CoverageSession(cov, owned=True, token=None)
    threads = [threading.Thread(target=session.trace_this_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
        thread.join()
    [warning] = session.warnings
    assert warning.startswith("requests run on threads the ")
    assert " core does not trace (thread 'Thread-" in warning
    assert "their lines are not measured: use Python 3.12+ for the sysmon core" in warning
    # Said through the covguard logger (pytest's capture here; stderr in a server).
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("covguard", warning)]


def test_a_paused_coverage_is_not_resumed_by_a_request_thread(tmp_path: Path) -> None:
    """Stopped by its owner (pytest-cov, a benchmark): a request's thread stays untraced."""
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"))
    cov.set_option("run:core", "ctrace")
    cov.start()
    cov.stop()
    session = CoverageSession(cov, owned=True, token=None)
    seen: list[object] = []

    def serve() -> None:
        session.trace_this_thread()
        seen.append(sys.gettrace())

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert seen == [None]
    assert session.warnings == []
