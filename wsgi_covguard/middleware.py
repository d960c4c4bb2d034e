"""CovGuard: the WSGI middleware that measures a live server and stops it cleanly.

Wrap the application in the WSGI entry point, after :func:`wsgi_covguard.start`::

    import wsgi_covguard
    wsgi_covguard.start()
    from myproject import create_app
    application = wsgi_covguard.CovGuard(create_app())

Without a token (argument or ``COVGUARD_TOKEN``) the middleware is inert: a pure
pass-through that measures nothing and adds no route, safe in production.

With a token, every request passes through to the application except the
control route. ``POST /__shutdown__`` with ``Authorization: Bearer <token>``
answers ``202 Accepted`` and then, in this order: the response is delivered
(the stop is triggered once the body is written); requests in flight finish
(up to ``drain_timeout``); the data is saved; the server is stopped through
its own clean path (:mod:`wsgi_covguard.stopping`); at exit, coverage stops
and saves for good, and the process exits 0. A streamed body still being sent at
``drain_timeout`` (a download, server-sent events) is cut at its next chunk: its
client sees the connection close, as if the network had dropped it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from werkzeug.datastructures import EnvironHeaders
from werkzeug.wrappers import Request, Response

from .guard import Door, Guard
from .interrupts import listen
from .messages import Answer, ControlRequest
from .servers import clients_gone, cuts_streams, wsgi_stopper
from .stopping import Stopper
from .threads import start_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CovGuard", "RequestCut"]


class CovGuard(Door):
    """Measure coverage of the WSGI ``app`` and serve the authenticated control routes.

    The options are :class:`~.guard.Door`'s: ``token``, ``shutdown_path`` (the
    ``PATH_INFO`` of the shutdown route, under any ``SCRIPT_NAME``),
    ``control_prefix``, ``allow_remote``, ``drain_timeout`` and ``autosave``.
    """

    app: WSGIApplication

    def _opened(self, guard: Guard) -> None:
        listen()  # the WSGI servers' handlers are in place when the app is imported

    @staticmethod
    def _name_of(environ: WSGIEnvironment) -> str:
        return f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"

    @staticmethod
    def _stopper_of(request: ControlRequest) -> Stopper:
        # Found in the request's thread, while the server is on its stack.
        return wsgi_stopper(request.server_handle)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        guard = self._guard
        if guard is None:
            return self.app(environ, start_response)
        routes = guard.routes
        if routes.may_claim(environ.get("PATH_INFO", "")):
            answer = routes.answer(_control_request(environ))
            if answer is not None:
                return _response(answer)(environ, start_response)
        session = guard.session
        if session.traces_threads and sys.gettrace() is None:
            session.trace_this_thread()  # a thread the tracer never reached (a runtime's)
        began = guard.enter(environ)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            guard.leave(environ, began)
            raise
        if hasattr(result, "__len__"):
            return _SizedTracked(result, guard, environ, began)
        return _Tracked(result, guard, environ, began)


class RequestCut(ConnectionResetError):
    """Raised into the server from a streamed body still being sent at the stop's deadline.

    Every server takes a connection reset for what it is, a client gone: it stops
    sending and closes the connection, quietly (one whose own exception for it is the
    quiet one gets a subclass of both, :func:`_cut`). Its client sees the body end
    short (a chunked body without its last chunk, fewer bytes than ``Content-Length``):
    never a complete-looking answer, nor a 500.
    """


@functools.cache
def _cut() -> type[RequestCut]:
    """:class:`RequestCut`, and the servers' own exceptions for a client gone, where they
    log a traceback for any other (:meth:`~.servers.base.ServerSupport.client_gone`)."""
    gone = clients_gone()
    if not gone:
        return RequestCut
    return type("RequestCut", (RequestCut, *gone), {"__module__": __name__})


def _until_cut(chunks: Iterator[bytes], guard: Guard, environ: WSGIEnvironment) -> Iterator[bytes]:
    """``chunks``, until the stop's deadline passed (:attr:`Guard.ending`) while sending,
    where the server may be raised into (:func:`~.servers.cuts_streams`)."""
    for chunk in chunks:
        if guard.ending and cuts_streams(environ):
            guard.note_cut(environ)
            raise _cut()(errno.ECONNRESET, "cut at the stop's deadline (drain_timeout)")
        yield chunk


class _Tracked:
    """The application's response, passed on untouched but for ``close()``.

    ``__iter__`` hands the server the body as it is, with one check per chunk for a
    body of unknown length (a generator: a stream that may outlast the stop, cut at
    the deadline); ``close()`` closes the inner iterable and then, whatever
    happened, tells the guard the request is over (once), with its environ
    and the number of contexts there were when it began.
    """

    __slots__ = ("_began", "_environ", "_guard", "_inner")

    def __init__(
        self, inner: Iterable[bytes], guard: Guard, environ: WSGIEnvironment, began: int
    ) -> None:
        self._inner = inner
        self._guard: Guard | None = guard
        self._environ = environ
        self._began = began

    def __iter__(self) -> Iterator[bytes]:
        guard = self._guard
        if guard is None:  # closed already: nothing more will be sent
            return iter(self._inner)
        return _until_cut(iter(self._inner), guard, self._environ)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self.__del__()

    def __del__(self) -> None:
        # Also when the server drops the response without close(): a threaded
        # server may skip it when the client resets the connection. A request counted in
        # flight forever would hold every shutdown for its whole drain_timeout.
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.leave(self._environ, self._began)


class _SizedTracked(_Tracked):
    """A tracked list-like body: servers use ``len()`` to set Content-Length.
    It is in memory already, so it is handed on as it is: its sending is the server's."""

    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]


def _control_request(environ: WSGIEnvironment) -> ControlRequest:
    """The WSGI door: a request the control routes can read."""

    def read_body(limit: int) -> bytes:
        request = Request(environ)
        request.max_content_length = limit
        return request.get_data(cache=False)

    return ControlRequest(
        method=environ.get("REQUEST_METHOD", ""),
        root_path=environ.get("SCRIPT_NAME", ""),
        path=environ.get("PATH_INFO", ""),
        query_string=environ.get("QUERY_STRING", "").encode("latin-1"),
        headers=EnvironHeaders(environ),
        remote_addr=environ.get("REMOTE_ADDR"),
        # The target as sent: every WSGI server but the standard library's says it, here.
        raw_target=environ.get("RAW_URI") or environ.get("REQUEST_URI"),
        read_body=read_body,
        server_handle=environ,
    )


def _response(answer: Answer) -> Response:
    """The WSGI door: an answer as werkzeug's response, running ``after`` once it is sent."""
    if answer.after is None:
        return Response(answer.body, status=answer.status, headers=answer.headers)
    response = Response(
        _BodyThen(answer.body, answer.after), status=answer.status, headers=answer.headers
    )
    response.headers["Content-Length"] = str(len(answer.body))
    return response


class _BodyThen:
    """A one-chunk body that runs ``action`` once it is written.

    Stopping before the body is on the wire lost the response on a threaded
    server, so ``action`` runs when the server comes back for the next chunk (the
    body is written by then) or, failing that, from ``close()``. A server may skip
    ``close()`` when the client resets the connection after reading, so close
    alone is not enough; and a server may stop at ``Content-Length`` and never call
    ``close()`` (against PEP 3333): the action runs half a second after the body was
    handed over, at the latest.
    """

    def __init__(self, body: bytes, action: Callable[[], object]) -> None:
        self._body = body
        self._action: Callable[[], object] | None = action
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        # An exiting interpreter starts no thread (Python 3.12+): a second shutdown answered
        # while the first one's stop ends the process was a 500. Then close() alone.
        with contextlib.suppress(RuntimeError):
            start_thread(self._close_later, name="covguard-after")
        yield self._body
        self.close()

    def _close_later(self) -> None:
        time.sleep(0.5)
        self.close()

    def close(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()
