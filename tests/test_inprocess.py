"""The core in-process: a door built on a session given, through werkzeug's test client
and a small ASGI harness, in milliseconds.

What these check does not depend on a server: the control routes' semantics in one
process, their answers' headers, the refusals, the shutdown's order (drain, save, the
stopper), fuzzed requests, and the ASGI door's pass-through. What does (each server's
stop, the lines against ``coverage run``) is checked on real servers elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import coverage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from wsgi_covguard import CovGuard, CovGuardASGI
from wsgi_covguard.auth import Token
from wsgi_covguard.ending import ENDING_SIGNALS
from wsgi_covguard.guard import LAST_GRACE, Guard
from wsgi_covguard.session import CoverageSession
from wsgi_covguard.stopping import Stopper

pytestmark = pytest.mark.in_process

TOKEN = "in-process-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


class Recorded(Stopper):
    """A stopper that only notes it was called, and what was saved by then."""

    name = "recorded"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[list[str]] = []
        self.called = threading.Event()

    def __call__(self) -> None:
        self.calls.append(sorted(path.name for path in self.folder.glob(".coverage.*")))
        self.called.set()


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def session(tmp_path: Path) -> CoverageSession:
    """A real session on a Coverage of its own, which measured one small file (the
    data to save, reset and report), and was stopped: nothing of pytest's is measured."""
    served = tmp_path / "served.py"
    served.write_text("def answer():\n    return 42\n\nanswer()\n")
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"), data_suffix=True,
                            config_file=False, source=[str(tmp_path)])  # fmt: skip
    cov.start()
    try:
        runpy.run_path(str(served))
    finally:
        cov.stop()
    return CoverageSession(cov, owned=False, token=Token(TOKEN))


@pytest.fixture
def stopper(tmp_path: Path) -> Recorded:
    return Recorded(tmp_path)


@pytest.fixture
def client(session: CoverageSession, stopper: Recorded) -> Client:
    door = CovGuard.in_process(hello, session=session, stopper=stopper, token=TOKEN,
                               drain_timeout=2)  # fmt: skip
    return Client(door)


def test_the_app_is_served_as_it_is(client: Client) -> None:
    answer = client.get("/", environ_base=LOCAL)
    assert (answer.status_code, answer.data) == (200, b"hello")


def test_status_save_and_reset_in_one_process(client: Client, tmp_path: Path) -> None:
    status = client.get("/__coverage__/status", headers=BEARER, environ_base=LOCAL)
    assert status.status_code == 200
    assert status.json is not None
    assert status.json["workers"] == 1
    saved = client.post("/__coverage__/save", headers=BEARER, environ_base=LOCAL)
    assert saved.status_code == 200, saved.data
    assert len(list(tmp_path.glob(".coverage.*"))) == 1
    reset = client.post("/__coverage__/reset", headers=BEARER, environ_base=LOCAL)
    assert reset.status_code == 200, reset.data


def test_control_answers_are_locked_to_their_origin(client: Client) -> None:
    answer = client.get("/__coverage__/status", headers=BEARER, environ_base=LOCAL)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "environ", "status"),
    [
        ("GET", "/__shutdown__", BEARER, LOCAL, 405),
        ("POST", "/__shutdown__", {}, LOCAL, 403),
        ("POST", "/__shutdown__", {"Authorization": "Bearer " + "x" * 27}, LOCAL, 403),
        ("POST", "/__shutdown__", BEARER, {"REMOTE_ADDR": "10.1.2.3"}, 403),
        ("POST", "/__shutdown__", {**BEARER, "X-Forwarded-For": "127.0.0.1"}, LOCAL, 403),
        ("POST", "/__coverage__/nothing-here", BEARER, LOCAL, 200),  # not ours: the app's
    ],
)
def test_a_bad_control_request_is_a_4xx_and_never_a_stop(
    client: Client,
    stopper: Recorded,
    method: str,
    path: str,
    headers: dict[str, str],
    environ: dict[str, str],
    status: int,
) -> None:
    answer = client.open(path, method=method, headers=headers, environ_base=environ)
    assert answer.status_code == status, answer.data
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    assert TOKEN not in answer.get_data(as_text=True)
    assert not stopper.called.wait(0.2), "no stop"


def test_a_shutdown_answers_202_then_drains_saves_and_stops_once(
    session: CoverageSession, stopper: Recorded
) -> None:
    door = CovGuard.in_process(hello, session=session, stopper=stopper, token=TOKEN,
                               drain_timeout=0.3)  # fmt: skip
    client = Client(door)
    answer = client.post("/__shutdown__", headers=BEARER, environ_base=LOCAL)
    assert answer.status_code == 202
    assert answer.json is not None
    assert answer.json["status"] == "stopping"
    answer.close()  # the body is on the wire: the stop begins
    assert stopper.called.wait(10)
    assert len(stopper.calls) == 1
    assert len(stopper.calls[0]) == 1, "saved before the stop"
    again = client.post("/__shutdown__", headers=BEARER, environ_base=LOCAL)
    again.close()
    # Past the deadline and its grace, a real door ends a process still running; this
    # one leaves the test's process alone (it would end here).
    time.sleep(0.3 + LAST_GRACE + 0.5)
    assert len(stopper.calls) == 1, "once"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "post", "DELETE"]),
    path=st.sampled_from(["/__shutdown__", "/__coverage__/save", "/__coverage__/reset",
                          "/__coverage__/context", "/__coverage__/status", "/__coverage__/data",
                          "/__coverage__/", "/__coverage__/report", "/__coverage__/../x"])
    | st.text(alphabet="/_%.aZ09", max_size=30).map(lambda text: "/__" + text),
    authorization=st.sampled_from(["", "Bearer", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
                                   "Bearer " + TOKEN[:-1]]),
    body=st.binary(max_size=64),
)  # fmt: skip
def test_no_hostile_request_is_a_5xx_a_stop_or_a_leak(
    client: Client, stopper: Recorded, method: str, path: str, authorization: str, body: bytes
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.open(path, method=method, headers=headers, data=body, environ_base=LOCAL)
    assert answer.status_code < 500, (answer.status_code, answer.data)
    assert TOKEN not in answer.get_data(as_text=True)
    answer.close()
    assert not stopper.called.is_set()


# -- the ASGI door ---------------------------------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"through"})


def _http(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "headers": raw,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip


def call_asgi(app: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    """One HTTP request through ``app``, on an event loop of its own."""
    return asyncio.run(_one_request(app, scope))


def test_the_asgi_door_passes_the_app_through_and_answers_its_routes(
    session: CoverageSession, stopper: Recorded
) -> None:
    door = CovGuardASGI.in_process(echo_app, session=session, stopper=stopper, token=TOKEN)
    assert call_asgi(door, _http("/anything")) == (200, b"through")
    status, body = call_asgi(door, _http("/__coverage__/status", headers=BEARER))
    assert status == 200
    assert json.loads(body)["workers"] == 1
    assert call_asgi(door, _http("/__shutdown__", "POST"))[0] == 403
    assert not stopper.called.is_set()


def test_the_process_is_left_alone(session: CoverageSession, stopper: Recorded) -> None:
    """Built in-process, the doors set no signal handler, start no thread (no control
    socket), add no exit step and say nothing."""
    import atexit
    import signal

    handlers = {signum: signal.getsignal(signum) for signum in ENDING_SIGNALS}
    threads = set(threading.enumerate())
    steps = atexit._ncallbacks()
    CovGuard.in_process(hello, session=session, stopper=stopper, token=TOKEN)
    CovGuardASGI.in_process(echo_app, session=session, stopper=stopper, token=TOKEN)
    assert {signum: signal.getsignal(signum) for signum in ENDING_SIGNALS} == handlers
    assert set(threading.enumerate()) == threads
    assert atexit._ncallbacks() == steps
    assert not session.announced


async def deaf_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then only waits: an app that never hears that its client left."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()


def test_a_websocket_open_at_the_deadline_is_closed_1012_and_the_stop_goes_on(
    session: CoverageSession, stopper: Recorded
) -> None:
    door = CovGuardASGI.in_process(deaf_websocket, session=session, stopper=stopper,
                                   token=TOKEN, drain_timeout=0.3)  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        incoming.put_nowait({"type": "websocket.connect"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {**_http("/ws"), "type": "websocket", "subprotocols": []}
        socket = asyncio.create_task(door(scope, incoming.get, send))
        while not sent:
            await asyncio.sleep(0.01)
        status, _ = await asyncio.to_thread(
            call_asgi_on, door, _http("/__shutdown__", "POST", BEARER), asyncio.get_running_loop()
        )
        assert status == 202
        await asyncio.wait_for(socket, 10)  # the door ended the app's call

    asyncio.run(run())
    assert sent[0] == {"type": "websocket.accept"}
    assert sent[-1] == {"type": "websocket.close", "code": 1012}
    assert stopper.called.wait(10), "the stop went on"


def call_asgi_on(
    app: Any, scope: dict[str, Any], loop: asyncio.AbstractEventLoop
) -> tuple[int, bytes]:
    """One HTTP request through ``app`` on the running ``loop`` (from another thread)."""
    future = asyncio.run_coroutine_threadsafe(_one_request(app, scope), loop)
    return future.result(timeout=10)


async def _one_request(app: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(message["status"] for message in sent if "status" in message)
    body = b"".join(message.get("body", b"") for message in sent)
    return status, body


def test_a_switch_waits_out_the_requests_in_flight_not_those_arriving(
    session: CoverageSession,
) -> None:
    guard = Guard(session, drain_timeout=2, name_of=str)
    first = object()
    began = guard.enter(first)
    done: list[bool] = []
    # Woken when the request leaves: a waiter left to its 60 s would still be waiting below.
    waiter = threading.Thread(target=lambda: done.append(guard.wait_out(60)), daemon=True)
    waiter.start()
    deadline = time.monotonic() + 30
    while not guard._waiting and time.monotonic() < deadline:  # the waiter took its snapshot
        time.sleep(0.001)
    later = object()
    guard.enter(later)  # arrives meanwhile: a busy server always has one more
    guard.leave(first, began)
    waiter.join(30)
    assert done == [True]
    assert guard.in_flight() == 1  # the later request still runs; it was not waited for
