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
and saves for good, and the process exits 0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from werkzeug.datastructures import EnvironHeaders
from werkzeug.wrappers import Request, Response

from .guard import Door
from .messages import Answer, ControlRequest
from .stopping import Stopper, find_stopper

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CovGuard"]


class CovGuard(Door):
    """Measure coverage of the WSGI ``app`` and serve the authenticated control routes.

    The options are :class:`~.guard.Door`'s: ``token``, ``shutdown_path`` (the
    ``PATH_INFO`` of the shutdown route, under any ``SCRIPT_NAME``),
    ``control_prefix``, ``allow_remote``, ``drain_timeout`` and ``autosave``.
    """

    app: WSGIApplication

    @staticmethod
    def _name_of(environ: WSGIEnvironment) -> str:
        return f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"

    @staticmethod
    def _stopper_of(request: ControlRequest) -> Stopper:
        # Found in the request's thread, while the server is on its stack.
        return find_stopper(request.server_handle)

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
            session.trace_this_thread()  # a thread the tracer never reached (granian)
        began = guard.enter(environ)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            guard.leave(environ, began)
            raise
        if hasattr(result, "__len__"):
            return _SizedTracked(result, guard.leave, environ, began)
        return _Tracked(result, guard.leave, environ, began)


class _Tracked:
    """The application's response, passed on untouched but for ``close()``.

    ``__iter__`` hands the server the inner iterator itself, so the body costs
    nothing extra; ``close()`` closes the inner iterable and then, whatever
    happened, tells the middleware the request is over (once), with its environ
    and the number of contexts there were when it began.
    """

    __slots__ = ("_began", "_done", "_environ", "_inner")

    def __init__(
        self,
        inner: Iterable[bytes],
        done: Callable[[WSGIEnvironment, int], None],
        environ: WSGIEnvironment,
        began: int,
    ) -> None:
        self._inner = inner
        self._done: Callable[[WSGIEnvironment, int], None] | None = done
        self._environ = environ
        self._began = began

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self.__del__()

    def __del__(self) -> None:
        # Also when the server drops the response without close(): werkzeug
        # skips it when the client resets the connection. A request counted in
        # flight forever would hold every shutdown for its whole drain_timeout.
        done, self._done = self._done, None
        if done is not None:
            done(self._environ, self._began)


class _SizedTracked(_Tracked):
    """A tracked list-like body: servers (waitress) use ``len()`` to set Content-Length."""

    __slots__ = ()

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
        # The target as sent: every WSGI server but wsgiref says it, in one of these.
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

    Stopping before the body is on the wire lost the response on werkzeug, so
    ``action`` runs when the server comes back for the next chunk (the body is
    written by then) or, failing that, from ``close()``. werkzeug skips
    ``close()`` when the client resets the connection after reading, so close
    alone is not enough.
    """

    def __init__(self, body: bytes, action: Callable[[], object]) -> None:
        self._body = body
        self._action: Callable[[], object] | None = action

    def __iter__(self) -> Iterator[bytes]:
        yield self._body
        self.close()

    def close(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()
