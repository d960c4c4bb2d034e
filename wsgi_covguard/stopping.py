"""How to make *this* server stop through its own clean path.

No WSGI server offers a portable "stop" (werkzeug 2.1 removed
``environ["werkzeug.server.shutdown"]``; waitress never had one), but each has a
clean way out, measured on every server we support:

============================  ===========================================
server (``SERVER_SOFTWARE``)   clean stop
============================  ===========================================
waitress, Werkzeug             SIGINT to the main thread: the serve loop
                               catches ``KeyboardInterrupt``, exits 0
gunicorn                       SIGTERM to the master (``os.getppid()``):
                               every worker finishes its requests, exits
                               through ``atexit`` and saves its own data
Cheroot                        ``HTTPServer.stop()`` from another thread
wsgiref, other socketserver    ``BaseServer.shutdown()`` from another thread
============================  ===========================================

:func:`find_stopper` runs in the request thread (where the server object can be
found on the call stack); the :class:`Stopper` it returns runs later, from the
shutdown thread, never from a thread the server itself must finish.
"""

from __future__ import annotations

import os
import signal
import socketserver
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["CallStop", "InterruptMain", "Stopper", "TerminateMaster", "find_stopper"]


class Stopper(Protocol):
    """Stops the server; called once, off the server's own threads.

    ``drains`` is True when the server itself lets requests in flight finish
    and every process exit through ``atexit`` (gunicorn's graceful stop): the
    middleware then neither drains nor saves first, so each worker saves once,
    at its own exit.
    """

    name: str
    drains: bool

    def __call__(self) -> None: ...


class InterruptMain:
    """SIGINT to the main thread, which raises ``KeyboardInterrupt`` there."""

    name = "SIGINT to the main thread"
    drains = False

    def __call__(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


class TerminateMaster:
    """SIGTERM to the pre-fork master: a graceful stop of every worker.

    From a worker the master is the parent; from the master, itself.
    """

    name = "SIGTERM to the master process"
    drains = True

    def __init__(self, *, in_master: bool = False) -> None:
        self._in_master = in_master

    def __call__(self) -> None:
        os.kill(os.getpid() if self._in_master else os.getppid(), signal.SIGTERM)


class CallStop:
    """Call the server object's own stop method (``shutdown`` or ``stop``)."""

    drains = False

    def __init__(self, server: Any, method: str) -> None:
        self._server = server
        self._method = method
        self.name = f"{type(server).__name__}.{method}()"

    def __call__(self) -> None:
        getattr(self._server, self._method)()


def find_stopper(environ: WSGIEnvironment) -> Stopper:
    """Choose how to stop the server that is serving ``environ``.

    Call it from the request's thread: socketserver and cheroot servers are
    found on that thread's call stack.
    """
    if "gunicorn.socket" in environ:
        return TerminateMaster()
    software: str = environ.get("SERVER_SOFTWARE", "")
    server = _server_on_stack()
    if software.startswith(("waitress", "Werkzeug")) and _sigint_works():
        # SIGINT, not shutdown(): ``flask run --reload`` serves from a thread
        # while the main thread waits in the reloader, and shutdown() hangs.
        return InterruptMain()
    if server is not None:
        method = "shutdown" if isinstance(server, socketserver.BaseServer) else "stop"
        return CallStop(server, method)
    return InterruptMain()


def _sigint_works() -> bool:
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _server_on_stack() -> Any | None:
    """The socketserver or cheroot server whose handler called us, if any."""
    cheroot = sys.modules.get("cheroot.server")
    kinds: tuple[type, ...] = (socketserver.BaseServer,)
    if cheroot is not None:
        kinds += (cheroot.HTTPServer,)
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        try:
            attached = getattr(owner, "server", None)
        except Exception:  # a proxy object whose attribute lookup fails
            attached = None
        for candidate in (owner, attached):
            if isinstance(candidate, kinds):
                return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None
