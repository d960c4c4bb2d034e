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

import atexit
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import coverage
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .auth import is_loopback, resolve_token
from .control import ControlRoutes, json_response
from .dashboard import Dashboard
from .errors import ConfigError
from .session import CoverageSession, get_session, start
from .stopping import Stopper, find_stopper, handler_threads
from .workers import ProcessGroup

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CovGuard"]

ALLOW_REMOTE_ENV = "COVGUARD_ALLOW_REMOTE"
#: The Content Security Policy of a control answer that is not a page: nothing may run.
NOTHING_ALLOWED = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_Handler = Callable[["WSGIEnvironment"], Response]
#: (the one method allowed, handler, read-only: Basic authentication accepted too)
_Route = tuple[str, _Handler, bool]


class CovGuard:
    """Measure coverage of ``app`` and serve the authenticated control route.

    :param app: the WSGI application to wrap.
    :param token: the control token (16 characters or more); defaults to
        ``COVGUARD_TOKEN``, then to the token given to :func:`start`. Without
        one the middleware is inert.
    :param shutdown_path: the ``PATH_INFO`` of the shutdown route, so it works
        under any ``SCRIPT_NAME`` mount point.
    :param control_prefix: where the live control routes live
        (``<prefix>/save``, ``/reset``, ``/context``, ``/status``, ``/data``).
    :param allow_remote: accept control requests from outside loopback (also
        ``COVGUARD_ALLOW_REMOTE=1``). Off by default: the token is the only
        other line of defence.
    :param drain_timeout: seconds to wait, after a shutdown request, for the
        requests in flight to finish before saving and stopping.
    :param autosave: save every so many seconds in the background (also
        ``COVGUARD_AUTOSAVE``), so a process killed with SIGKILL loses at most
        that much. Off by default.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        token: str | None = None,
        shutdown_path: str = "/__shutdown__",
        control_prefix: str = "/__coverage__",
        allow_remote: bool = False,
        drain_timeout: float = 10.0,
        autosave: float | None = None,
    ) -> None:
        self.app = app
        self.shutdown_path = shutdown_path
        self.allow_remote = allow_remote or os.environ.get(ALLOW_REMOTE_ENV) == "1"
        self.drain_timeout = drain_timeout
        for name, path in (("shutdown_path", shutdown_path), ("control_prefix", control_prefix)):
            if not path.startswith("/") or path.endswith("/") or len(path) < 2:
                raise ConfigError(f"{name} {path!r} must start with '/' and not end with one")
        if drain_timeout < 0:
            raise ConfigError(f"drain_timeout {drain_timeout!r} must be 0 seconds or more")

        session = get_session()
        self._token = resolve_token(token) or (session.token if session else None)
        self._session: CoverageSession | None = None
        if self._token is None:
            return  # inert: nothing started, nothing written, no route
        session = session or start(token=self._token.reveal(), autosave=autosave)
        assert session is not None  # a token was given
        self._session = session
        session.remember_start_up()  # the app is imported: this is the start-up state
        self._lock = threading.Lock()
        # The requests passed to the app and not finished: id(environ) -> environ.
        self._running: dict[int, WSGIEnvironment] = {}
        # When the stop must be over, once a shutdown began: one drain_timeout in all.
        self._deadline: float | None = None
        self._named_cut: set[int] = set()  # requests said to be cut (named once)
        # Requests that arrived after the drain and before the server stopped:
        # let them finish before the process ends (werkzeug's threads are daemons).
        atexit.register(self._drain, at_exit=True)
        group = ProcessGroup(session)
        group.listen_if_prefork()
        controls = ControlRoutes(group, lambda: len(self._running))
        dashboard = Dashboard(group)
        self._routes: dict[str, _Route] = {
            shutdown_path: ("POST", self._shutdown, False),
            f"{control_prefix}/snapshot": ("POST", dashboard.take_snapshot, False),
        }
        for path, (method, handler) in controls.table(control_prefix).items():
            self._routes[path] = (method, handler, False)
        for path, page in dashboard.read_only(control_prefix).items():
            self._routes[path] = ("GET", page, True)
        self._trees = dashboard.read_only_trees(control_prefix)
        self._tree_root = control_prefix + "/"
        self._stopping = False
        self._announce()

    @property
    def enabled(self) -> bool:
        """False for an inert middleware (no token)."""
        return self._session is not None

    @property
    def in_flight(self) -> int:
        """Requests passed to the application whose response is not closed yet."""
        return len(self._running) if self.enabled else 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._session is None:
            return self.app(environ, start_response)
        path: str = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        if route is None and path.startswith(self._tree_root):
            route = self._tree_route(path)
        if route is not None and _spelled_exactly(environ):
            return self._control(*route, environ)(environ, start_response)
        if self._session.traces_threads and sys.gettrace() is None:
            self._session.trace_this_thread()  # a thread the tracer never reached (granian)
        began = len(self._session.contexts)
        with self._lock:
            self._running[id(environ)] = environ
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self._leave(environ, began)
            raise
        if hasattr(result, "__len__"):
            return _SizedTracked(result, self._leave, environ, began)
        return _Tracked(result, self._leave, environ, began)

    def _leave(self, environ: WSGIEnvironment, began: int) -> None:
        with self._lock:
            self._running.pop(id(environ), None)
        session = self._session
        assert session is not None
        if began != len(session.contexts):  # the context changed while it ran
            request = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
            session.note_overlap(request, began - 1)

    # -- control -------------------------------------------------------------

    def _tree_route(self, path: str) -> _Route | None:
        for root, handler in self._trees.items():
            if path.startswith(root):
                return ("GET", functools.partial(_rest_of, handler, path[len(root) :]), True)
        return None

    def _control(
        self, method: str, handler: _Handler, read_only: bool, environ: WSGIEnvironment
    ) -> Response:
        """A control route's answer, locked to its own origin whatever it is.

        The pages share the origin of the app under test, whose scripts a browser
        would let read them: no framing, no sniffing, no caching, no referrer, and
        a Content Security Policy (a page's own, or none at all allowed).
        """
        response = self._answer(method, handler, read_only, environ)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", NOTHING_ALLOWED)
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Cache-Control"] = "no-store"
        headers["Referrer-Policy"] = "no-referrer"
        return response

    def _answer(
        self, method: str, handler: _Handler, read_only: bool, environ: WSGIEnvironment
    ) -> Response:
        """Refuse all but an authenticated request, with its method, from an allowed client.

        ``read_only`` pages (the dashboard) also take the token as the password of
        HTTP Basic authentication, so a browser can ask for it; every route that
        changes state is POST and Bearer-only, which no browser sends by itself.
        """
        if environ.get("REQUEST_METHOD") != method:
            response = json_response({"error": f"method not allowed; use {method}"}, 405)
            response.headers["Allow"] = method
            return response
        if not self.allow_remote and not is_loopback(environ):
            return json_response(
                {
                    "error": "control requests are accepted from loopback only"
                    f" (set {ALLOW_REMOTE_ENV}=1 to allow others)"
                },
                403,
            )
        assert self._token is not None
        if self._token.matches_bearer(environ) or (
            read_only and self._token.matches_basic(environ)
        ):
            try:
                return handler(environ)
            except HTTPException as exc:
                return exc.get_response(environ)
            except OSError as exc:  # the data could not be read or written: say so
                return json_response({"error": str(exc)}, 507)
            except coverage.CoverageException as exc:  # e.g. nothing measured to report yet
                return json_response({"error": str(exc)}, 409)
        if read_only and not environ.get("HTTP_AUTHORIZATION"):
            response = json_response({"error": "log in with the token as the password"}, 401)
            response.headers["WWW-Authenticate"] = 'Basic realm="covguard", charset="UTF-8"'
            return response
        return json_response({"error": "missing or wrong 'Authorization: Bearer' token"}, 403)

    def _shutdown(self, environ: WSGIEnvironment) -> Response:
        # Found now, in the request's thread, while the server is on the stack.
        stopper = find_stopper(environ)
        body = json.dumps({"status": "stopping", "pid": os.getpid()}).encode() + b"\n"
        response = Response(
            _ThenRun(body, lambda: self.begin_shutdown(stopper)),
            status=202,
            mimetype="application/json",
        )
        response.headers["Content-Length"] = str(len(body))
        return response

    def begin_shutdown(self, stopper: Stopper) -> bool:
        """Drain, save and call ``stopper``, in a thread of its own; once.

        The shutdown route calls it with the stopper of the server it runs
        under; ``covguard serve`` also calls it on SIGTERM. Returns False if a
        shutdown had already begun (nothing more is done).
        """
        if self._session is None:
            return False
        with self._lock:
            if self._stopping:
                return False
            self._stopping = True
            self._deadline = time.monotonic() + self.drain_timeout
        threading.Thread(
            target=self._drain_save_stop, args=(stopper,), name="covguard-shutdown"
        ).start()
        return True

    def _drain_save_stop(self, stopper: Stopper) -> None:
        if not stopper.drains:  # else the server drains, and each process saves at exit
            self._drain()
            assert self._session is not None
            self._session.save()  # on disk before the stop; finish() at exit adds the rest
        stopper()

    def _drain(self, *, at_exit: bool = False) -> None:
        """Wait for the requests in flight, until the stop's deadline; name those cut.

        The stop has one ``drain_timeout`` in all, however many waits it has: a
        stalled client cannot hold it twice. At exit the server no longer accepts
        connections, and the wait is also for its handler threads that have one but
        have not reached us yet: the interpreter would cut their response short
        (see :func:`handler_threads`).
        """
        deadline = self._deadline or time.monotonic() + self.drain_timeout

        def busy() -> bool:
            return bool(self._running) or (at_exit and bool(handler_threads()))

        while busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            cut = [
                f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
                for key, environ in self._running.items()
                if key not in self._named_cut
            ]
            self._named_cut.update(self._running)
        if cut:
            shown = ", ".join(cut[:5]) + (f" and {len(cut) - 5} more" if len(cut) > 5 else "")
            _say(
                f"{len(cut)} request(s) still in flight after drain_timeout={self.drain_timeout}s;"
                f" stopping anyway, cutting {shown}"
            )

    def _announce(self) -> None:
        session = self._session
        assert session is not None
        if session.announced:
            return
        session.announced = True
        _say(
            f"measuring coverage (core {session.core}, data {session.data_file}.*,"
            f" control POST {self.shutdown_path}, pid {os.getpid()})"
        )


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


def _rest_of(
    handler: Callable[[WSGIEnvironment, str], Response], rest: str, environ: WSGIEnvironment
) -> Response:
    return handler(environ, rest)


def _spelled_exactly(environ: WSGIEnvironment) -> bool:
    """True unless the raw request path spells the control path another way.

    Servers decode ``PATH_INFO``: ``/%5F%5Fshutdown%5F%5F`` arrives as
    ``/__shutdown__``. A control route answers only its exact spelling, so the
    raw target (``RAW_URI`` or ``REQUEST_URI``, which every server but wsgiref
    sets) must be ``SCRIPT_NAME + PATH_INFO`` to the letter.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        return True
    target = raw.split("?", 1)[0]
    if "://" in target:  # absolute-form: http://host/path
        target = urlsplit(target).path
    expected: str = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return bool(target == expected)


class _ThenRun:
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


def _say(message: str) -> None:
    print(f"covguard: {message}", file=sys.stderr, flush=True)
