"""A stop bounded by drain_timeout, on every server, whatever is still running.

Every server and every request shape that can outlast a stop: a streamed body, server-sent
events, a handler still working, a client reading a big body slowly, a client that sent half
of its request's headers. The shutdown is
asked while such a request runs; the process must be gone soon after ``drain_timeout``
(here 2 s: the wait allows 8 s more for a busy machine, where the servers' own waits
took 15 s to for ever), exit 0, its data saved, the client's answer cut, never a 5xx.
``python -m pytest tests/test_bounded_stop.py -s`` prints each case's time. Ctrl-C during
the drain ends it at once, on the same servers and shapes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from live import (
    BIN,
    RunningServer,
    data_files,
    free_port,
    measured_lines,
    wait_in_flight,
)

from wsgi_covguard.prefork import children

DRAIN = 2.0

#: The entry points, for a drain_timeout: plainapp (WSGI, also as a Flask app's wsgi_app,
#: for ``flask run``) and notesapi (ASGI).
ENTRIES = {
    "bounded_wsgi.py": "import wsgi_covguard\nwsgi_covguard.start()\nfrom plainapp import app\n"
    "application = wsgi_covguard.CovGuard(app, drain_timeout={drain})\n"
    "from flask import Flask\nflask_app = Flask(__name__)\nflask_app.wsgi_app = application\n",
    "bounded_asgi.py": "import wsgi_covguard\nwsgi_covguard.start()\nimport notesapi\n"
    "app = wsgi_covguard.CovGuardASGI(notesapi.api, drain_timeout={drain})\n",
}


def _host_port(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


def _run_simple(port: int) -> list[str]:
    code = ("import bounded_wsgi; from werkzeug.serving import run_simple; run_simple("
            f"'127.0.0.1', {port}, bounded_wsgi.application, threaded=True)")  # fmt: skip
    return [sys.executable, "-c", code]


#: Every server, from its own command line: name -> argv for a port. One line per server.
#: (Not wsgiref: it serves one request at a time, so a shutdown waits behind the stream
#: like any request; SIGTERM stops it at once, saved: tests/test_drain_and_signals.py.)
WSGI = {
    "waitress": lambda port: [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}",
                              "bounded_wsgi:application"],
    "werkzeug": _run_simple,
    "flask run": lambda port: [str(BIN / "flask"), "--app", "bounded_wsgi:flask_app", "run",
                               *_host_port(port)],
    "gunicorn sync -w 2": lambda port: [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w",
                                        "2", "bounded_wsgi:application"],
    "gunicorn gthread -w 2": lambda port: [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}",
                                           "-w", "2", "-k", "gthread", "--threads", "2",
                                           "bounded_wsgi:application"],
    "cheroot": lambda port: [sys.executable, "-m", "cheroot", "--bind", f"127.0.0.1:{port}",
                             "bounded_wsgi:application"],
    "granian (WSGI)": lambda port: [str(BIN / "granian"), "--interface", "wsgi",
                                    "bounded_wsgi:application", *_host_port(port)],
}  # fmt: skip
ASGI = {
    "uvicorn": lambda port: [str(BIN / "uvicorn"), "bounded_asgi:app", *_host_port(port)],
    "uvicorn --workers 2": lambda port: [str(BIN / "uvicorn"), "bounded_asgi:app", "--workers",
                                         "2", *_host_port(port)],
    "hypercorn": lambda port: [str(BIN / "hypercorn"), "bounded_asgi:app", "--bind",
                               f"127.0.0.1:{port}"],
    "daphne": lambda port: [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                            "bounded_asgi:app"],
    "granian (ASGI)": lambda port: [str(BIN / "granian"), "--interface", "asgi",
                                    "bounded_asgi:app", *_host_port(port)],
}  # fmt: skip

#: Every request shape that can outlast the stop: its path (WSGI, ASGI) and the line of the
#: app that shows it ran (tests/apps/plainapp.py, notesapi.py).
SHAPES = {
    "stream": ("/drip", "/drip", "a stream's line"),
    "server-sent events": ("/events", "/events", "data: "),
    "slow handler": ("/slow?30", "/slow?seconds=30", "sleep("),
    "slow reader": ("/big", "/big", "30_000_000"),
    # A client that sends part of its request's headers and waits: nothing of the app runs
    # (the line is one run at import), no request is in flight, the server holds a socket.
    "unfinished headers": ("/drip", "/drip", "import os"),
}


class Client:
    """One request in a thread; reads its answer (slowly, for the slow reader) to the end.

    ``outcome`` is ``"complete"`` for a whole answer, ``"cut"`` for a connection closed
    before the answer's end, or ``"status N"`` for an answer with an error status."""

    def __init__(self, port: int, path: str, *, slowly: bool, unfinished: bool = False) -> None:
        self.outcome = "no answer yet"
        self.answering = threading.Event()  # the answer's headers came
        self.hurry = threading.Event()  # the server is gone: read what is left at once
        run = self._unfinished if unfinished else self._run
        self._thread = threading.Thread(target=run, args=(port, path, slowly))
        self._thread.start()

    def _unfinished(self, port: int, path: str, slowly: bool) -> None:
        """Half a request's headers, then wait for the server to answer or to close."""
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag".encode())
            self.answering.set()  # no answer can come: the request has not ended
            try:
                answer = sock.recv(65536)
            except OSError as exc:
                self.outcome = f"cut ({type(exc).__name__})"
            else:
                self.outcome = f"answered: {answer[:60]!r}" if answer else "cut (closed)"

    def _run(self, port: int, path: str, slowly: bool) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            if slowly:  # a receive buffer of its own size: the server's writes soon wait on us
                connection.connect()  # (not below loopback's 64 KiB segments: no window at all)
                connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            connection.request("GET", path)
            answer = connection.getresponse()
            self.answering.set()
            if answer.status >= 400:
                self.outcome = f"status {answer.status}"
                return
            while answer.read(16384 if slowly else 65536):
                if slowly and not self.hurry.is_set():
                    time.sleep(0.1)  # 160 KB/s: 30 MB would take three minutes
            # read(amt) ends quietly at a connection closed before Content-Length: so, cut.
            self.outcome = "cut (short of Content-Length)" if answer.length else "complete"
        except (http.client.HTTPException, OSError) as exc:
            self.outcome = f"cut ({type(exc).__name__})"
        finally:
            connection.close()

    def join(self) -> None:
        self._thread.join(timeout=60)


def line_of(folder: Path, module: str, text: str) -> int:
    lines = (folder / f"{module}.py").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


#: The shape each server's stop is proven with on every Python and core: a handler still
#: running at the stop, whose lines the core must have recorded in a thread (or a task) that
#: never ends. The other shapes ask the same of the door and the server whatever measures
#: (the drain, the cut, the exit), so ``make test`` runs them on the first Python alone.
EVERY_CORE = "slow handler"


def _shape(shape: str) -> list[pytest.MarkDecorator]:
    return [] if shape == EVERY_CORE else [pytest.mark.core_independent]


def _cases() -> list[object]:
    cases = []
    for kind, servers in (("wsgi", WSGI), ("asgi", ASGI)):
        for server in servers:
            for shape in SHAPES:
                cases.append(
                    pytest.param(kind, server, shape, id=f"{server}-{shape}", marks=_shape(shape))
                )
    return cases


def serving(
    server: str,
    shape: str,
    folder: Path,
    servers: Callable[..., RunningServer],
    drain: float,
    launcher: list[str] | None = None,
) -> tuple[RunningServer, Client]:
    """``server`` with ``drain_timeout=drain``, in the middle of a request of ``shape``;
    its command run by ``launcher`` (its arguments the server's) if given."""
    kind = "wsgi" if server in WSGI else "asgi"
    for name, text in ENTRIES.items():
        (folder / name).write_text(text.format(drain=drain))
    module = "plainapp" if kind == "wsgi" else "notesapi"
    (folder / ".coveragerc").write_text(f"[run]\nsource_pkgs = {module}\n")
    wsgi_path, asgi_path, _ = SHAPES[shape]
    port = free_port()
    argv = (WSGI if kind == "wsgi" else ASGI)[server](port)
    if launcher is not None:
        argv = [*launcher, *argv[1:]]
    live = servers(argv, cwd=folder, port=port).wait_listening()
    client = Client(
        port, wsgi_path if kind == "wsgi" else asgi_path, slowly=shape == "slow reader",
        unfinished=shape == "unfinished headers",
    )  # fmt: skip
    if shape != "slow handler":
        assert client.answering.wait(timeout=20), live.output()
    elif server.startswith("gunicorn sync"):
        time.sleep(1.0)  # the busy worker cannot answer the status route while it sleeps
    else:
        wait_in_flight(live.url, 1)  # under several workers: until the busy one answers
    return live, client


def ended_cleanly(
    live: RunningServer, client: Client, folder: Path, server: str, shape: str, timeout: float
) -> tuple[float, str]:
    """Wait for the server to be gone: exit 0, the client's answer cut, no traceback, the
    request's line saved. Returns the seconds it took (from now) and the server's log."""
    began = time.monotonic()
    code = live.wait(timeout=timeout)
    took = time.monotonic() - began
    client.hurry.set()
    client.join()
    output = live.output()
    assert code == 0, output
    assert client.outcome.startswith("cut"), f"{client.outcome}; the server's log:\n{output}"
    assert "Traceback" not in output, output
    module = "plainapp" if server in WSGI else "notesapi"
    measured = measured_lines(folder, module)[f"{module}.py"]
    assert line_of(folder, module, SHAPES[shape][2]) in measured, output
    return took, output


@pytest.mark.parametrize(("kind", "server", "shape"), _cases())
def test_the_stop_ends_within_drain_timeout_whatever_still_runs(
    kind: str, server: str, shape: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    live, client = serving(server, shape, plainapp, servers, DRAIN)
    wsgi_path, asgi_path, _ = SHAPES[shape]
    assert live.shutdown().status_code == 202
    took, output = ended_cleanly(live, client, plainapp, server, shape, timeout=DRAIN + 8)
    print(f"\n{server} / {shape}: gone after {took:.2f} s (drain_timeout {DRAIN:g} s)")
    path = (wsgi_path if kind == "wsgi" else asgi_path).partition("?")[0]
    if shape == "stream" and server != "granian (WSGI)":  # a chunk every 0.2 s: by the door
        assert f"cut GET {path}: still running at drain_timeout" in output, output
    elif shape not in {"slow reader", "unfinished headers"}:  # said by the door or the server
        said = (f"cut GET {path}: still running",
                f"ending it now, its data saved, cutting GET {path}",
                "Killed 1 pending application instances")  # fmt: skip
        assert any(line in output for line in said), output


#: granian's command line, its master running its stop handler 2 s late: a master under
#: load, deterministically. (Not SIGSTOP: a signal sent right after SIGCONT may land in
#: the master's watcher thread, and its main thread never runs the handler.)
LATE_GRANIAN_MASTER = [
    sys.executable, "-c",
    "import sys, threading\n"
    "from granian import cli\n"
    "from granian.server.common import AbstractServer as Master\n"
    "stop = Master.signal_handler_interrupt\n"
    "Master.signal_handler_interrupt = lambda self, *_: threading.Timer(2, stop, [self]).start()\n"
    "sys.argv[0] = 'granian'\n"
    "sys.exit(cli.entrypoint())",
]  # fmt: skip


def test_ctrl_c_with_the_master_late_still_stops_the_workers_through_it(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    server = (
        "granian (ASGI)"  # uvicorn's master, told to stop, takes its workers' ends as they come
    )
    live, client = serving(
        server, "slow handler", plainapp, servers, drain=30.0, launcher=LATE_GRANIAN_MASTER
    )
    workers = children(live.pid)
    assert live.shutdown().status_code == 202
    # The terminal's Ctrl-C, to the master and its worker at once. A worker that ended (its
    # data saved) half a second later, before its master had stopped it, was an "Unexpected
    # exit from worker-1" to granian's master, which then exited 1.
    for pid in still_draining(live.pid):
        os.kill(pid, signal.SIGINT)
    ended_cleanly(live, client, plainapp, server, "slow handler", timeout=15)
    assert len(data_files(plainapp)) == len(workers), live.output()


def still_draining(master: int) -> list[int]:
    """The master and the workers still there once the idle ones have gone (they stop at
    once: the master stops every worker), half a second into the drain at least. A Ctrl-C
    landing in an idle uvicorn worker's last moments (its serve loop over, asyncio.run's
    own SIGINT handler back) is uvicorn's and asyncio's: a KeyboardInterrupt traceback,
    with or without wsgi_covguard; it is not a drain."""
    time.sleep(0.5)
    seen = children(master)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = children(master)
        if now == seen:
            break
        seen = now
    return [master, *seen]


#: Ctrl-C ends the drain at once on every server above but granian's WSGI interface: its
#: workers put their own signal handlers in place after the app is imported, with no
#: lifespan to put ours back in front; there the stop waits for drain_timeout, as above.
INTERRUPTED = [server for server in [*WSGI, *ASGI] if server != "granian (WSGI)"]


@pytest.mark.parametrize(
    "shape", [pytest.param(s, marks=_shape(s)) for s in ("stream", EVERY_CORE)]
)
@pytest.mark.parametrize("server", INTERRUPTED)
def test_ctrl_c_during_the_drain_ends_it_at_once(
    server: str, shape: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    live, client = serving(server, shape, plainapp, servers, drain=30.0)
    processes = [live.pid, *children(live.pid)]  # the master, and its workers (no helper)
    assert live.shutdown().status_code == 202
    draining = still_draining(live.pid)
    for pid in draining:  # what a terminal's Ctrl-C does: SIGINT to each, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    took, output = ended_cleanly(live, client, plainapp, server, shape, timeout=15)
    print(f"\n{server} / {shape}: gone {took:.2f} s after Ctrl-C (drain_timeout 30 s)")
    assert took < 8, f"the drain was not ended at once ({took:.1f} s); the log:\n{output}"
    # Every process that serves saved: the workers (their master serves nothing), or the one.
    assert len(data_files(plainapp)) == max(1, len(processes) - 1), output
