"""CovGuardASGI: the ASGI door, with the WSGI middleware's contract.

Wrap the application in the ASGI entry point, after :func:`wsgi_covguard.start`::

    import wsgi_covguard
    wsgi_covguard.start()
    from myproject import app as myproject_app
    app = wsgi_covguard.CovGuardASGI(myproject_app)

Without a token it is inert: every scope goes straight to the app. With one, the
control routes are :class:`~.guard.Guard`'s, exactly as under WSGI; everything else
(``http``, ``websocket`` and ``lifespan`` scopes, streaming bodies, background
tasks) passes through untouched. An HTTP request is in flight until the app's call
returns (its last body message sent, its background tasks done); a websocket until
it closes, or until ``drain_timeout`` at a stop: then it is closed (1012). The
control handlers block (they read and write data files), so they run on a small
executor of their own, never queued behind the app's threads (``asyncio.to_thread``
uses the loop's default one); a request's body comes first, on the event loop, within
``BODY_TIMEOUT``: a slow client holds no thread.

The stop: the server's own graceful path, as its module in :mod:`.servers` knows it
(:meth:`~.servers.base.ServerSupport.asgi_stopper`), else the generic one
(:func:`~.stopping.find_asgi_stopper`): connections finish, the app's lifespan
shutdown runs, the process exits 0 and saves at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import types
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge

from .guard import Door, Guard
from .interrupts import listen
from .log import say
from .messages import Answer, ControlRequest, json_answer
from .servers import serving_here
from .stopping import (
    StopAcceptingFirst,
    Stopper,
    checked_master,
    find_asgi_stopper,
    stop_accepting,
)
from .threads import leave_signals

__all__ = ["CovGuardASGI"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CovGuardASGI(Door):
    """Measure coverage of the ASGI ``app`` and serve the authenticated control routes.

    The options are :class:`~.guard.Door`'s, as for :class:`~wsgi_covguard.CovGuard`,
    with the same defaults and the same order of settings (:mod:`.settings`).
    """

    app: ASGIApp
    #: The event loop serving this process, once the lifespan scope told it.
    _loop: asyncio.AbstractEventLoop | None = None

    def _opened(self, guard: Guard) -> None:
        server = serving_here()  # its signals and stop events, if it has its own
        if server is not None:
            server.asgi_opened(guard)

    def _stop_accepting(self) -> None:
        """A sibling's stop began (:class:`~.stopping.StopAcceptingFirst`): no new connection here
        either.
        A worker still booting is waited for (within ``drain_timeout``) until it serves,
        so that it takes no connection afterwards."""
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline:
            loop = self._loop
            if loop is not None and (
                stop_accepting(loop) or not isinstance(loop, asyncio.BaseEventLoop)
            ):  # it served, and no longer does (or its loop is not asyncio's: uvloop)
                return
            time.sleep(0.05)

    def _inert(self) -> None:
        # Inert, the door steps aside: its call becomes the app's own, without a coroutine
        # of ours around each request. (A subclass of its own, so it is still a
        # CovGuardASGI, and servers still see an ``async`` __call__.)
        app = self.app
        call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
        if not inspect.iscoroutinefunction(call):
            return  # not an ``async`` callable: leave it to the server to say so
        own = app if call is app else types.MethodType(call, app)
        self.__class__ = type(type(self).__name__, (type(self),), {"__call__": staticmethod(own)})

    @staticmethod
    def _name_of(scope: Scope) -> str:
        if scope["type"] == "websocket":
            return f"WEBSOCKET {scope.get('path')}"
        return f"{scope.get('method')} {scope.get('path')}"

    @staticmethod
    def _stopper_of(request: ControlRequest) -> Stopper:
        master = checked_master()  # a worker's: its stop ends every worker
        loop = request.server_handle
        server = serving_here()
        stopper = server.asgi_stopper(master, loop) if server is not None else None
        if stopper is not None:
            return stopper
        stopper = find_asgi_stopper(master)
        if stopper.drains:  # a master's graceful stop lets nothing in half answered
            return stopper
        return StopAcceptingFirst(stopper, loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self._guard
        if guard is None or scope["type"] not in ("http", "websocket"):
            if scope["type"] == "lifespan" and guard is not None:
                self._loop = _asyncio_loop()
                listen()  # in front of the handlers the server put in place since the import
                server = serving_here()
                if server is not None:
                    server.asgi_serving()
                if self._loop is None:
                    say(_no_asyncio(), logging.WARNING)
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and guard.routes.may_claim(_under_mount(scope)):
            loop = _asyncio_loop()
            if loop is None:
                await _send_answer(json_answer({"error": _no_asyncio()}, 501), send)
                return
            body = _Body()
            request = _control_request(scope, body, loop)
            if guard.routes.claims(request):  # ours: its body now, then a thread of ours
                try:
                    await asyncio.wait_for(body.read(receive), BODY_TIMEOUT)
                except TimeoutError:
                    late = f"the request's body did not come within {BODY_TIMEOUT:g}s"
                    await _send_answer(json_answer({"error": late}, 408), send)
                    return
                answer = await loop.run_in_executor(_executor(), guard.routes.answer, request)
                assert answer is not None  # claimed
                await _send_answer(answer, send)
                return
        if scope["type"] == "websocket":
            if _asyncio_loop() is None:  # it could not be ended at a stop: not counted
                await self.app(scope, receive, send)
            else:
                await _serve_websocket(self.app, guard, scope, receive, send)
            return
        if guard.stopping and scope.get("http_version") in ("1.0", "1.1"):
            send = _closing(send)
        if _asyncio_loop() is not None:
            await _serve_http(self.app, guard, scope, receive, send)
            return
        began = guard.enter(scope)  # under trio: counted, not ended at the deadline
        try:
            await self.app(scope, receive, send)
        finally:
            guard.leave(scope, began)


def _no_asyncio() -> str:
    """Said once at start-up, and answered (501) to control requests, under another event
    loop; with how this server is told to run asyncio's, if it says."""
    server = serving_here()
    how = f" ({server.name}: {server.asyncio_choice})" if server and server.asyncio_choice else ""
    return (
        "the control routes need asyncio's event loop, and this server runs another (trio);"
        f" serve with asyncio{how}; the app itself is served"
    )


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio event loop; None under another one (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _closing(send: Send) -> Send:
    """``send``, its response asking the client to close the connection after it.

    Once the stop began, a keep-alive connection would carry the client's next request
    into the server's own stop, which some servers cut (a reaper closes a connection it
    thinks idle as its request arrives, a reactor cancels what runs). Closed, the
    client's next request opens a new connection, served until the server closes its
    socket, or refused by the OS: never half answered. (As servers do themselves while
    they stop; HTTP/1 only, where the header exists.)
    """

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(bytes(name).lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


async def _serve_http(
    app: ASGIApp, guard: Guard, scope: Scope, receive: Receive, send: Send
) -> None:
    """The app's HTTP request, in flight until its call returns; its response cut if it
    is still being sent when the drain runs out.

    A response under way (a stream, server-sent events) has no end the server waits for:
    servers wait for every task at their graceful stop. At the deadline its task is
    cancelled and the door returns, the response unfinished: the server closes the
    connection (its log: the application returned without completing the response), and
    the client sees the body end short. A response not yet begun is left alone:
    cancelled, it would become the server's 500; it ends with the process instead
    (:meth:`~.guard.Guard._end_at_the_latest`).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    state = {"started": False, "ended": False}

    async def watched(message: Message) -> None:
        if message["type"] == "http.response.start":
            state["started"] = True
        await send(message)

    def end_here() -> None:
        if state["started"] and not task.done():
            state["ended"] = True
            task.cancel()

    def end() -> bool:  # from the stopping thread
        return bool(state["started"]) and _call_in(loop, end_here)

    began = guard.enter(scope, end=end)
    try:
        await app(scope, receive, watched)
    except asyncio.CancelledError:
        if not state["ended"]:
            raise  # the server's own cancellation goes on
        task.uncancel()
        guard.note_cut(scope)
    finally:
        guard.leave(scope, began)


async def _serve_websocket(
    app: ASGIApp, guard: Guard, scope: Scope, receive: Receive, send: Send
) -> None:
    """The app's websocket, in flight until it ends; ended cleanly if the drain runs out.

    An open websocket has no end of its own, and an app that only sends never
    hears that its client left: its task would hold the server's graceful stop for
    ever. So when the drain runs out, the app's call is cancelled (its ``finally``
    blocks run) and the socket, if still open, closed with 1012 ("service restart",
    what servers send their clients when they stop).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    ended = False
    state = {"accepted": False, "closed": False}

    def end_here() -> None:
        nonlocal ended
        ended = True
        task.cancel()

    async def watched(message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            state["accepted"] = True
        elif kind in ("websocket.close", "websocket.http.response.start"):
            state["closed"] = True
        await send(message)

    def end() -> bool:  # from the stopping thread
        return _call_in(loop, end_here)

    began = guard.enter(scope, end=end)
    try:
        await app(scope, receive, watched)
    except asyncio.CancelledError:
        # Ours (the drain ran out), or the server's own at the end of its graceful stop
        # (its graceful timeout): either way the client hears why it ends.
        if state["accepted"] and not state["closed"]:
            await _close(send)
        if not ended:
            raise  # the server's cancellation goes on
        task.uncancel()
        guard.note_cut(scope, "closed cleanly" if state["accepted"] else "refused")
    finally:
        guard.leave(scope, began)


def _under_mount(scope: Scope) -> str:
    """The request's path under the app's mount point (``root_path``): servers and
    frameworks put the mount point in front of ``path`` too (a server's ``--root-path``,
    Starlette's ``Mount``), where WSGI's ``PATH_INFO`` leaves ``SCRIPT_NAME`` out."""
    path: str = scope.get("path", "")
    root = scope.get("root_path")
    return path[len(root) :] if root and path.startswith(root) else path


def _call_in(loop: asyncio.AbstractEventLoop, action: Callable[[], object]) -> bool:
    """Have ``loop`` run ``action`` (from another thread); False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(action)
    except RuntimeError:  # the loop is closed: nothing left to end
        return False
    return True


async def _close(send: Send) -> None:
    """Close a websocket the app left open: 1012 ("service restart"), or 1000 where the
    server lets an app send no other standard code (autobahn's websockets)."""
    for code in (1012, 1000):
        with contextlib.suppress(Exception):  # refused, or the client is gone already
            await send({"type": "websocket.close", "code": code})
            return


#: Seconds a control request's body may take to come, read on the event loop before a
#: thread is given to the request; longer is a 408.
BODY_TIMEOUT = 10.0
#: The most of a control request's body that is read: more than any route takes.
MAX_CONTROL_BODY = 64 * 1024
#: Threads for the control handlers, in each process (a route's work is short).
CONTROL_THREADS = 4

_executors: dict[int, ThreadPoolExecutor] = {}


def _executor() -> ThreadPoolExecutor:
    """This process's executor for the control handlers (a forked worker makes its own)."""
    pool = _executors.get(os.getpid())
    if pool is None:
        pool = _executors[os.getpid()] = ThreadPoolExecutor(
            CONTROL_THREADS, thread_name_prefix="covguard-control", initializer=leave_signals
        )
    return pool


class _Body:
    """A control request's body, read once on the event loop (``MAX_CONTROL_BODY`` at
    most), then handed to the route: as much as it allows, or a 413."""

    def __init__(self) -> None:
        self._body = b""
        self._too_large = False

    async def read(self, receive: Receive) -> None:
        body = bytearray()
        more = True
        while more and len(body) <= MAX_CONTROL_BODY:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self._body, self._too_large = bytes(body), len(body) > MAX_CONTROL_BODY

    def __call__(self, limit: int) -> bytes:
        if self._too_large or len(self._body) > limit:
            raise RequestEntityTooLarge()
        return self._body


def _control_request(scope: Scope, body: _Body, loop: asyncio.AbstractEventLoop) -> ControlRequest:
    """The ASGI door: a request the control routes can read (from a thread of ours)."""
    headers = Headers(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
    )
    raw_path = scope.get("raw_path")
    query = scope.get("query_string", b"")
    client = scope.get("client")
    return ControlRequest(
        method=scope.get("method", ""),
        root_path=scope.get("root_path", ""),
        path=_under_mount(scope),
        query_string=query,
        headers=headers,
        remote_addr=client[0] if client else None,
        # The target as sent (percent-encoded), when the server gives it.
        raw_target=(raw_path + (b"?" + query if query else b"")).decode("latin-1")
        if raw_path is not None
        else None,
        read_body=body,
        server_handle=loop,
    )


async def _send_answer(answer: Answer, send: Send) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.items()
    ]
    headers.append((b"content-length", str(len(answer.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
    if answer.after is not None:  # the body is with the server now: the stop may begin
        answer.after()
