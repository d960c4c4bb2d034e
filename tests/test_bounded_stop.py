"""A stop bounded by drain_timeout, on every server, whatever is still running.

Every server and every request shape that can outlast a stop: a streamed body, server-sent
events, a handler still working, a client reading a big body slowly. The shutdown is
asked while such a request runs; the process must be gone soon after ``drain_timeout``
(here 2 s: the wait allows 8 s more for a busy machine, where the servers' own waits
took 15 s to for ever), exit 0, its data saved, the client's answer cut, never a 5xx.
``python -m pytest tests/test_bounded_stop.py -s`` prints each case's time.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from live import BIN, RunningServer, free_port, measured_lines, wait_in_flight

DRAIN = 2.0

ENTRIES = {
    "bounded_wsgi.py": "import wsgi_covguard\nwsgi_covguard.start()\nfrom plainapp import app\n"
    f"application = wsgi_covguard.CovGuard(app, drain_timeout={DRAIN})\n",
    "bounded_asgi.py": "import wsgi_covguard\nwsgi_covguard.start()\nimport notesapi\n"
    f"app = wsgi_covguard.CovGuardASGI(notesapi.api, drain_timeout={DRAIN})\n",
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
}


class Client:
    """One request in a thread; reads its answer (slowly, for the slow reader) to the end.

    ``outcome`` is ``"complete"`` for a whole answer, ``"cut"`` for a connection closed
    before the answer's end, or ``"status N"`` for an answer with an error status."""

    def __init__(self, port: int, path: str, *, slowly: bool) -> None:
        self.outcome = "no answer yet"
        self.answering = threading.Event()  # the answer's headers came
        self.hurry = threading.Event()  # the server is gone: read what is left at once
        self._thread = threading.Thread(target=self._run, args=(port, path, slowly))
        self._thread.start()

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


def _cases() -> list[object]:
    cases = []
    for kind, servers in (("wsgi", WSGI), ("asgi", ASGI)):
        for server in servers:
            for shape in SHAPES:
                cases.append(pytest.param(kind, server, shape, id=f"{server}-{shape}"))
    return cases


@pytest.mark.parametrize(("kind", "server", "shape"), _cases())
def test_the_stop_ends_within_drain_timeout_whatever_still_runs(
    kind: str, server: str, shape: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    for name, text in ENTRIES.items():
        (plainapp / name).write_text(text)
    module = "plainapp" if kind == "wsgi" else "notesapi"
    (plainapp / ".coveragerc").write_text(f"[run]\nsource_pkgs = {module}\n")
    wsgi_path, asgi_path, marker = SHAPES[shape]
    port = free_port()
    argv = (WSGI if kind == "wsgi" else ASGI)[server](port)
    live = servers(argv, cwd=plainapp, port=port).wait_listening()
    client = Client(port, wsgi_path if kind == "wsgi" else asgi_path, slowly=shape == "slow reader")
    if shape != "slow handler":
        assert client.answering.wait(timeout=20), live.output()
    elif server.startswith("gunicorn sync"):
        time.sleep(1.0)  # the busy worker cannot answer the status route while it sleeps
    else:
        wait_in_flight(live.url, 1)  # under several workers: until the busy one answers
    began = time.monotonic()
    assert live.shutdown().status_code == 202
    code = live.wait(timeout=DRAIN + 8)
    took = time.monotonic() - began
    print(f"\n{server} / {shape}: gone after {took:.2f} s (drain_timeout {DRAIN:g} s)")
    client.hurry.set()
    client.join()
    output = live.output()
    assert code == 0, output
    assert client.outcome.startswith("cut"), f"{client.outcome}; the server's log:\n{output}"
    measured = measured_lines(plainapp, module)[f"{module}.py"]
    assert line_of(plainapp, module, marker) in measured, output
    assert "Traceback" not in output, output
    path = (wsgi_path if kind == "wsgi" else asgi_path).partition("?")[0]
    if shape == "stream" and server != "granian (WSGI)":  # a chunk every 0.2 s: by the door
        assert f"cut GET {path}: still running at drain_timeout" in output, output
    elif shape != "slow reader":  # or with the process: said by the door or by the server
        said = (f"cut GET {path}: still running",
                f"ending it now, its data saved, cutting GET {path}",
                "Killed 1 pending application instances")  # fmt: skip
        assert any(line in output for line in said), output
