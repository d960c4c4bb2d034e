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
                               graceful for every worker
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

__all__ = ["Stopper", "find_stopper"]


class Stopper(Protocol):
    """Stops the server; called once, off the server's own threads."""

    name: str

    def __call__(self) -> None: ...


class _InterruptMain:
    """SIGINT to the main thread, which raises ``KeyboardInterrupt`` there."""

    name = "SIGINT to the main thread"

    def __call__(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


class _TerminateParent:
    """SIGTERM to the pre-fork master: a graceful stop of every worker."""

    name = "SIGTERM to the master process"

    def __call__(self) -> None:
        os.kill(os.getppid(), signal.SIGTERM)


class _CallStop:
    """Call the server object's own stop method (``shutdown`` or ``stop``)."""

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
    software: str = environ.get("SERVER_SOFTWARE", "")
    if software.startswith("gunicorn"):
        return _TerminateParent()
    server = _server_on_stack()
    if software.startswith(("waitress", "Werkzeug")) and _sigint_works():
        # SIGINT, not shutdown(): ``flask run --reload`` serves from a thread
        # while the main thread waits in the reloader, and shutdown() hangs.
        return _InterruptMain()
    if server is not None:
        method = "shutdown" if isinstance(server, socketserver.BaseServer) else "stop"
        return _CallStop(server, method)
    return _InterruptMain()


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
