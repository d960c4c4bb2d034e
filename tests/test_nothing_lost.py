"""Nothing lost, whatever ends the process: signals close together, SIGHUP, a full disk.

Each server is started from its own command line, as users start it, on 127.0.0.1;
only processes started here are signalled, by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from live import (
    BIN,
    TOKEN,
    CovguardServe,
    RunningServer,
    children,
    data_files,
    free_port,
    measured_lines,
    read_data,
    server_argv,
    wait_workers_measuring,
)

BEARER = {"Authorization": f"Bearer {TOKEN}"}
HELLO = '        body = b"hello"'
HELLO_ASGI = '    return {"hello": "world"}'  # tests/apps/notesapi.py

#: How many modules the entry points below import: a save of that many files takes a while
#: (some 0.2 s), and a second signal sent 3 ms after the first lands in the middle of it.
MODULES = 300


def with_a_slow_save(folder: Path) -> None:
    """Entry points that import :data:`MODULES` modules first: ``slow_wsgi:application``
    (plainapp), ``slow_asgi:app`` (notesapi)."""
    (folder / ".coveragerc").write_text("[run]\nsource = .\n")
    package = folder / "bulk"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for number in range(MODULES):
        (package / f"m{number}.py").write_text(f"def f():\n    return {number}\n\n\nf()\n")
    imports = "".join(f"import bulk.m{number}  # noqa: E402, F401\n" for number in range(MODULES))
    for entry, app, wrap in [
        ("slow_wsgi", "from plainapp import app", "application = wsgi_covguard.CovGuard(app)"),
        ("slow_asgi", "from notesapi import api", "app = wsgi_covguard.CovGuardASGI(api)"),
    ]:
        (folder / f"{entry}.py").write_text(
            f"import wsgi_covguard\nwsgi_covguard.start()\n{imports}{app}\n{wrap}\n"
        )


def hello_line(folder: Path, module: str = "plainapp") -> int:
    text = HELLO if module == "plainapp" else HELLO_ASGI
    return (folder / f"{module}.py").read_text().splitlines().index(text) + 1


def hello_measured(folder: Path, module: str = "plainapp") -> bool:
    return hello_line(folder, module) in measured_lines(folder, module)[f"{module}.py"]


def gunicorn(port: int, entry: str = "plain_wsgi") -> list[str]:
    return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", "2",
            f"{entry}:application"]  # fmt: skip


def uvicorn(port: int, entry: str = "notes_entry") -> list[str]:
    return [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), f"{entry}:app"]


def waitress(port: int, entry: str = "plain_wsgi") -> list[str]:
    return server_argv("waitress-serve", port, entry)


def werkzeug(port: int, entry: str = "plain_wsgi") -> list[str]:
    return server_argv("werkzeug-threaded", port, entry)


#: The servers, as started from their command lines; the exit status one SIGTERM gives:
#: waitress and werkzeug have no SIGTERM handler (wsgi_covguard saves, then the process dies
#: of it: 128 + 15 through the shell), gunicorn stops gracefully (0), uvicorn stops gracefully
#: and dies of it after the save; the app module it serves.
SERVERS: dict[str, tuple[Callable[..., list[str]], int, str]] = {
    "waitress": (waitress, 143, "plainapp"),
    "werkzeug": (werkzeug, 143, "plainapp"),
    "gunicorn": (gunicorn, 0, "plainapp"),
    "uvicorn (ASGI)": (uvicorn, 143, "notesapi"),
}

#: Two signals, the second 3 ms after the first: a supervisor and a shell both stopping it.
PAIRS = [(signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=["TERM+TERM", "TERM+INT"])
@pytest.mark.parametrize("server", SERVERS)
def test_a_second_signal_during_the_save_waits_for_it(
    server: str,
    first: signal.Signals,
    second: signal.Signals,
    plainapp: Path,
    servers: Callable[..., RunningServer],
) -> None:
    with_a_slow_save(plainapp)
    argv, status, module = SERVERS[server]
    port = free_port()
    entry = "slow_wsgi" if module == "plainapp" else "slow_asgi"
    live = servers(argv(port, entry), cwd=plainapp, port=port).wait_listening()
    for _ in range(4):  # every gunicorn worker, most likely
        assert live.get("/hello").status_code == 200
    if server == "gunicorn":  # the signals come while both save, not while one boots
        wait_workers_measuring(live, 2)
    live.signal(first)
    time.sleep(0.003)
    live.signal(second)
    code = live.wait(timeout=20)
    assert code in {status, 0}, live.output()
    files = data_files(plainapp)
    assert files, live.output()
    for path in files:
        with read_data(path) as data:  # a file cut short in the middle of a write fails here
            assert data.measured_files(), path
    assert hello_measured(plainapp, module)
    assert "Traceback" not in live.output()


#: A WSGI entry point with a thread of the app's that outlives the server 2 s: the process's
#: exit joins it, and a quick stop comes meanwhile.
LINGERING = """\
import threading, time
import wsgi_covguard
wsgi_covguard.start()
from plainapp import app


def linger():
    while threading.main_thread().is_alive():
        time.sleep(0.05)
    time.sleep(2)


threading.Thread(target=linger).start()
application = wsgi_covguard.CovGuard(app)
"""


def test_a_quick_stop_while_the_workers_join_their_threads_is_no_traceback(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    (plainapp / "lingering.py").write_text(LINGERING)
    port = free_port()
    live = servers(gunicorn(port, "lingering"), cwd=plainapp, port=port).wait_listening()
    wait_workers_measuring(live, 2)
    live.signal(signal.SIGTERM)
    time.sleep(0.7)  # the workers' graceful stop over, their threads being joined
    # Ctrl-C after SIGTERM: the master's quick stop, SIGQUIT to each worker, whose handler
    # raised sys.exit inside threading._shutdown ("Exception ignored", a traceback).
    live.signal(signal.SIGINT)
    assert live.wait(timeout=20) == 0, live.output()
    assert len(data_files(plainapp)) == 2, live.output()
    assert "Traceback" not in live.output()


def with_sighup(handler: str, argv: list[str]) -> list[str]:
    """``argv`` with SIGHUP at ``SIG_DFL`` (a terminal's) or ``SIG_IGN`` (``nohup``'s),
    whatever the suite itself inherited."""
    code = (f"import os, signal, sys; signal.signal(signal.SIGHUP, signal.{handler});"
            " os.execvp(sys.argv[1], sys.argv[1:])")  # fmt: skip
    return [sys.executable, "-c", code, *argv]


@pytest.mark.parametrize("server", ["waitress", "werkzeug"])
def test_sighup_saves_before_the_process_dies_of_it(
    server: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    argv, _, _ = SERVERS[server]
    port = free_port()
    live = servers(with_sighup("SIG_DFL", argv(port)), cwd=plainapp, port=port).wait_listening()
    assert live.get("/hello").text == "hello"
    live.signal(signal.SIGHUP)
    assert live.wait(timeout=10) == 128 + signal.SIGHUP, live.output()
    assert hello_measured(plainapp)


@pytest.mark.core_independent
def test_a_server_started_with_nohup_goes_on_after_sighup(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = with_sighup("SIG_IGN", waitress(port))
    live = servers(argv, cwd=plainapp, port=port).wait_listening()
    live.signal(signal.SIGHUP)  # ignored, as nohup asked: no save, no end
    assert live.get("/hello").text == "hello"
    assert data_files(plainapp) == []
    assert live.shutdown().status_code == 202
    assert live.wait(timeout=10) == 0, live.output()
    assert hello_measured(plainapp)


def test_gunicorn_still_reloads_on_sighup_and_keeps_the_replaced_workers_data(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    live = servers(gunicorn(port), cwd=plainapp, port=port).wait_listening()
    for _ in range(4):
        assert live.get("/hello").text == "hello"
    replaced = set(wait_workers_measuring(live, 2))
    live.signal(signal.SIGHUP)  # gunicorn's own: new workers, the old ones stopped gracefully
    deadline = time.monotonic() + 20
    while replaced & set(children(live.pid)) or len(children(live.pid)) < 2:
        assert time.monotonic() < deadline, live.output()
        time.sleep(0.05)
    assert len(data_files(plainapp)) == 2, "the replaced workers saved at their exit"
    assert live.get("/hello").text == "hello", "still serving"
    assert live.shutdown().status_code == 202
    assert live.wait(timeout=20) == 0, live.output()
    assert hello_measured(plainapp)


# -- full disks ---------------------------------------------------------------------------


def fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte; the filler's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 65536)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0")
    os.close(fd)
    return filler


def control(live: CovguardServe, route: str, **kwargs: object) -> requests.Response:
    return requests.post(f"{live.url}/__coverage__/{route}", headers=BEARER, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def on_small_disk(plainapp: Path, small_disk: Path) -> Iterator[CovguardServe]:
    """``covguard serve`` of plainapp, its data on a small, real file system; asked once."""
    env = {**os.environ, "COVERAGE_FILE": str(small_disk / ".coverage")}
    live = CovguardServe(["plainapp:app"], cwd=plainapp, env=env)
    try:
        assert live.get("/hello").text == "hello"
        yield live
    finally:
        live.stop()


@pytest.mark.core_independent
def test_a_reset_on_a_full_disk_is_507_and_leaves_no_broken_file(
    on_small_disk: CovguardServe, plainapp: Path, small_disk: Path
) -> None:
    live = on_small_disk
    assert control(live, "save").status_code == 200
    filler = fill(small_disk)
    for query in ("", "?to=start"):
        answer = control(live, f"reset{query}")
        assert answer.status_code == 507, answer.text
        [error] = answer.json()["errors"]
        assert "bytes free" in error
        assert "free some space there" in error
        assert TOKEN not in answer.text
    assert live.get("/hello").text == "hello", "the server goes on"
    filler.unlink()
    assert control(live, "reset?to=start").status_code == 200
    assert live.get("/hello").text == "hello"
    assert control(live, "save").status_code == 200, "later saves work: nothing was broken"
    assert live.shutdown().status_code == 202
    assert live.wait(timeout=15) == 0
    assert "Traceback" not in live.stderr
    assert hello_line(plainapp) in measured_lines(small_disk, "plainapp")["plainapp.py"]


@pytest.mark.core_independent
def test_snapshots_are_bounded_in_count(plainapp: Path) -> None:
    from wsgi_covguard.dashboard import MAX_SNAPSHOTS

    live = CovguardServe(["plainapp:app"], cwd=plainapp)
    try:
        assert live.get("/hello").text == "hello"
        # Status codes only: an answer kept holds its connection (waitress accepts 100).
        taken = {control(live, "snapshot", data=f"n{n}").status_code for n in range(MAX_SNAPSHOTS)}
        assert taken == {200}
        refused = control(live, "snapshot", data="one more")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == (
            f"{MAX_SNAPSHOTS} snapshots already, the most kept; remove old ones"
        )
        assert live.get("/hello").text == "hello", "the server goes on"
    finally:
        live.stop()


@pytest.mark.core_independent
def test_a_snapshot_needs_room_and_fails_with_507_on_a_full_disk(
    on_small_disk: CovguardServe, small_disk: Path
) -> None:
    live = on_small_disk
    assert control(live, "snapshot", data="room").status_code == 200
    filler = fill(small_disk)
    full = control(live, "snapshot", data="on a full disk")
    assert full.status_code == 507, full.text
    assert "bytes free" in full.json()["error"]
    assert "free some space there" in full.json()["error"]
    filler.unlink()
    assert control(live, "snapshot", data="room again").status_code == 200
    assert live.shutdown().status_code == 202
    assert live.wait(timeout=15) == 0
    assert "Traceback" not in live.stderr


#: An app that sets up logging itself once it is imported, as many do.
LOGGING_ENTRY = """\
import logging
import wsgi_covguard
wsgi_covguard.start()
from plainapp import app
logging.basicConfig(format="app-log: %(name)s: %(message)s")
application = wsgi_covguard.CovGuard(app)
"""


@pytest.mark.parametrize("how", ["covguard serve", "waitress-serve"])
def test_a_process_that_could_not_save_exits_74_and_says_so_at_the_end(
    how: str, plainapp: Path, small_disk: Path, servers: Callable[..., RunningServer]
) -> None:
    env = {"COVERAGE_FILE": str(small_disk / ".coverage")}
    if how == "covguard serve":
        live: CovguardServe | RunningServer = CovguardServe(
            ["plainapp:app"], cwd=plainapp, env={**os.environ, **env}
        )
    else:
        (plainapp / "logging_entry.py").write_text(LOGGING_ENTRY)
        port = free_port()
        argv = [
            str(BIN / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            "logging_entry:application",
        ]
        live = servers(argv, cwd=plainapp, port=port, env=env).wait_listening()
    try:
        assert live.get("/hello").text == "hello"
        fill(small_disk)
        assert control(live, "save").status_code == 507  # type: ignore[arg-type]
        assert live.shutdown().status_code == 202
        assert live.wait(timeout=15) == 74
        log = live.stderr if isinstance(live, CovguardServe) else live.output()
        said = [line for line in log.splitlines() if "could not save coverage data" in line]
        # The first failure (the save route's), and the end, once each, in the app's own
        # format once it configured logging.
        prefix = "covguard: " if how == "covguard serve" else "app-log: covguard: "
        first, last = said
        assert first.startswith(prefix + "could not save coverage data beside")
        assert "(said once; the end of the process says if data was lost)" in first
        assert last.startswith(prefix + "could not save coverage data beside")
        assert "bytes free in " + repr(str(small_disk)) in last
        assert "exits with status 74" in last
        assert "Traceback" not in log
    finally:
        if isinstance(live, CovguardServe):
            live.stop()


# -- memory ---------------------------------------------------------------------------------

#: 400 summaries and data downloads of a live session, as a dashboard polling all day asks
#: for them, with a Flask app's requests between them (their garbage has reference cycles);
#: prints how much the resident memory grew over the last 300.
REPORTS_LOOP = """\
import wsgi_covguard
session = wsgi_covguard.start()
import plainapp
from flask import Flask
from wsgi_covguard.reporting import Reports
from wsgi_covguard.workers import Siblings

group, reports = Siblings(session), Reports(session)
pages = Flask(__name__)
pages.get("/")(lambda: "a page")
browser = pages.test_client()


def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


for number in range(400):
    plainapp.slow(0)  # lines keep coming, so every report is a fresh one
    for _ in range(10):
        browser.get("/")
    reports.run(lambda: reports.figures(group.parts()))
    session.dump()
    if number == 99:
        before = rss()
print(rss() - before)
"""


@pytest.mark.core_independent
def test_reports_and_data_downloads_do_not_pile_up_memory(plainapp: Path) -> None:
    done = subprocess.run(
        [str(BIN / "python"), "-c", REPORTS_LOOP], cwd=plainapp, capture_output=True,
        text=True, timeout=120, env={**os.environ, "COVGUARD_TOKEN": TOKEN},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    grown = int(done.stdout)
    # Each report left 0.5-0.65 MB behind (in-memory databases never closed, reference
    # cycles waiting for a full collection): 150 MB over 300; then the requests' garbage,
    # frozen with the heap during each report, waited in the oldest generation: 8-33 KB a
    # report. Flat now, but for the heap's own ups and downs.
    assert grown < 2_000_000, f"{grown / 1e6:.1f} MB more after 300 reports"


#: An entry point whose second worker boots late: the first to import creates a marker.
SLOW_SECOND = """\
import os, time
import wsgi_covguard
wsgi_covguard.start()
try:
    os.close(os.open("first-booted", os.O_CREAT | os.O_EXCL))
except FileExistsError:
    time.sleep(4)  # the second worker is still booting when the stop comes
import notesapi
app = wsgi_covguard.CovGuardASGI(notesapi.api)
"""


@pytest.mark.parametrize("how", ["SIGTERM to the supervisor", "Ctrl-C"])
def test_a_uvicorn_worker_stopped_while_it_boots_keeps_its_data(
    how: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    live = _two_uvicorn_workers(plainapp, SLOW_SECOND, servers)  # the first serves
    workers = children(live.pid)
    # uvicorn catches the worker's SIGTERM while it boots and raised it again once stopped,
    # with the default handler back: the worker died past its last save.
    for pid in [live.pid, *(workers if how == "Ctrl-C" else [])]:
        os.kill(pid, signal.SIGINT if how == "Ctrl-C" else signal.SIGTERM)
    assert live.wait(timeout=30) in (0, 128 + signal.SIGTERM), live.output()
    assert len(data_files(plainapp)) == 2, live.output()  # each worker saved
    assert "Traceback" not in live.output()


#: An entry point whose workers get their supervisor's SIGTERM once uvicorn has stopped
#: serving and before the final save: multiprocessing's finalizers run in that order.
TERM_AFTER_THE_STOP = """\
import os, signal, time
import multiprocessing.util
import wsgi_covguard
wsgi_covguard.start()
import notesapi


def supervisors_terminate():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)


multiprocessing.util.Finalize(None, supervisors_terminate, exitpriority=20)
app = wsgi_covguard.CovGuardASGI(notesapi.api)
"""


def test_a_uvicorn_worker_terminated_after_its_server_stopped_keeps_its_data(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    live = _two_uvicorn_workers(plainapp, TERM_AFTER_THE_STOP, servers)
    # uvicorn puts back the handlers it found once it has stopped: SIGTERM's default, in
    # a worker that imported the app while serving. A Ctrl-C's terminate landing there
    # ended the worker before its last save (one run in five of the full suite).
    live.signal(signal.SIGINT)
    assert live.wait(timeout=30) == 0, live.output()
    assert len(data_files(plainapp)) == 2, live.output()
    assert "Traceback" not in live.output()


def _two_uvicorn_workers(
    plainapp: Path, entry_point: str, servers: Callable[..., RunningServer]
) -> RunningServer:
    """``uvicorn entry:app --workers 2``, measuring notesapi, once a request was served."""
    (plainapp / "entry.py").write_text(entry_point)
    (plainapp / ".coveragerc").write_text("[run]\nsource_pkgs = notesapi\n")
    port = free_port()
    argv = [str(BIN / "uvicorn"), "entry:app", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    live = servers(argv, cwd=plainapp, port=port).wait_listening()
    assert live.get("/hello").json() == {"hello": "world"}
    return live
