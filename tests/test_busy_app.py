"""The control routes keep answering while the app keeps every thread of its own busy.

Under ASGI the app's blocking work goes to the event loop's default executor
(``asyncio.to_thread``): a control route queued there waited behind it (an app with eight
such sleeps delayed the shutdown's 202 by 28.6 s). And a slow client sending a control
request's body held a thread while it dripped in (seven of them kept ``status`` and the
shutdown unanswered for 40 s). Real uvicorn, real sockets, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from live import BIN, TOKEN, RunningServer, free_port

from wsgi_covguard.asgi import BODY_TIMEOUT

BUSY = """\
import asyncio, time
import wsgi_covguard
wsgi_covguard.start()
from fastapi import FastAPI

busy = FastAPI()


@busy.get("/block")
async def block() -> dict[str, str]:
    await asyncio.to_thread(time.sleep, 30)  # the loop's default executor, for 30 s
    return {"blocked": "done"}


app = wsgi_covguard.CovGuardASGI(busy, drain_timeout=1)
"""

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_control_routes_answer_while_the_apps_threads_and_slow_clients_are_busy(
    plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    (plainapp / "busy.py").write_text(BUSY)
    port = free_port()
    argv = [str(BIN / "uvicorn"), "busy:app", "--host", "127.0.0.1", "--port", str(port)]
    live = servers(argv, cwd=plainapp, port=port).wait_listening()
    status = f"{live.url}/__coverage__/status"
    # The app's executor full (its default is 6 threads on 2 CPUs, 32 at most): 40 sleeps.
    for _ in range(40):
        threading.Thread(target=_ask_quietly, args=(live.url + "/block",), daemon=True).start()
    deadline = time.monotonic() + 10
    while requests.get(status, headers=BEARER, timeout=10).json()["in_flight"] < 40:
        assert time.monotonic() < deadline, "the app's requests did not all begin"
        time.sleep(0.05)
    # Seven authenticated control requests whose body never comes whole.
    slow = []
    for _ in range(7):
        sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10)
        sock.sendall(
            b"POST /__coverage__/context HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Length: 100\r\nContent-Type: text/plain\r\n\r\nonly part of it"
        )
        slow.append(sock)
    began = time.monotonic()
    assert requests.get(status, headers=BEARER, timeout=10).status_code == 200
    assert requests.get(status, timeout=10).status_code == 403  # refusals too
    answered = time.monotonic() - began
    assert answered < 5, f"status took {answered:.1f} s behind the app and the slow clients"
    for sock in slow:  # each is told, once BODY_TIMEOUT has passed
        head = sock.recv(4096).split(b"\r\n", 1)[0]
        assert head == b"HTTP/1.1 408 Request Timeout", head
        sock.close()
    began = time.monotonic()
    assert live.shutdown().status_code == 202
    assert time.monotonic() - began < 5, "the shutdown waited behind the app"
    assert live.wait(timeout=15) == 0, live.output()  # the sleeps end with the process


def _ask_quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # cut at the stop: expected
        requests.get(url, timeout=60)
