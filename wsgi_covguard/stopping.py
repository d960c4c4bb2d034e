"""How to make *this* server stop through its own clean path.

No WSGI server offers a portable "stop" (werkzeug 2.1 removed
``environ["werkzeug.server.shutdown"]``; waitress never had one), but each has a
clean way out, measured on every server we support:

============================  ===========================================
server (``SERVER_SOFTWARE``)   clean stop
============================  ===========================================
waitress                       SIGINT to the main thread: the serve loop
                               catches ``KeyboardInterrupt``, exits 0
Werkzeug, wsgiref, other       ``BaseServer.shutdown()`` from another
socketserver servers           thread; then SIGINT to the main thread if
                               the loop ran in another one (``flask run
                               --reload``: the main thread watches files)
gunicorn                       SIGTERM to the master (the parent, checked:
                               :func:`~.prefork.master`): every worker
                               finishes its requests, exits through
                               ``atexit`` and saves its own data
Granian                        SIGTERM to the master (the same):
                               it terminates each worker, which finishes
                               its requests and saves as multiprocessing
                               ends it (a worker stopped behind the
                               master's back is an "unexpected exit")
Cheroot                        ``HTTPServer.stop()`` from another thread
uvicorn (ASGI)                 its ``should_exit`` flag, as its own signal
                               handler sets it, but with no signal to raise
                               again afterwards: connections finish, the
                               lifespan shutdown runs, the process exits 0
hypercorn (ASGI)               no new connection accepted
                               (:class:`AcceptNoMore`), the guard drains,
                               then SIGTERM: to itself in one process (its
                               event loop handles it: the graceful stop),
                               else to the master, which sets the shutdown
                               event its workers watch
                               (:func:`.servers.hypercorn.watch_stop`)
Daphne (ASGI)                  no new connection accepted, the guard
                               drains, then SIGINT to the main thread:
                               Twisted's handler stops the reactor
============================  ===========================================

Never a ``KeyboardInterrupt`` in a socketserver's accept loop: landing while
``process_request`` starts a handler thread (``Thread.start()`` waits), it makes
socketserver shut down the connection that thread is answering, and the client
gets the headers without the body. ``shutdown()`` ends the loop between two
requests instead.

:func:`find_stopper` runs in the request thread (where the server object can be
found on the call stack); the :class:`Stopper` it returns runs later, from the
shutdown thread, never from a thread the server itself must finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import socketserver
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .log import say
from .prefork import lost_master, master, serves_prefork

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "AcceptNoMore",
    "CallStop",
    "EndServeLoop",
    "InterruptMain",
    "Stopper",
    "TerminateMaster",
    "before_drain",
    "checked_master",
    "find_asgi_stopper",
    "find_stopper",
    "handler_threads",
    "stop_accepting",
]


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


def before_drain(stopper: Stopper) -> float:
    """What ``stopper`` needs before the guard drains: ``stopper.refuse_new()``, for one
    that has it (:class:`AcceptNoMore`). Returns how long no request must have been in
    flight before the stop (0: the drain is enough)."""
    refuse = getattr(stopper, "refuse_new", None)
    if refuse is None:
        return 0.0
    refuse()
    return float(getattr(stopper, "settle", 0.0))


class AcceptNoMore:
    """No new connection accepted on ``loop``; then ``stopper``, once the guard drained.

    For ASGI servers whose own stop cuts what arrives as it begins: hypercorn marks its
    connections terminated *before* it closes its listening sockets, so a connection it
    accepts meanwhile is closed just as its request reaches the app; daphne's reactor
    cancels whatever runs when it stops. The stop the other way round, as a graceful
    server does it: the listening sockets are taken off the event loop first
    (``loop.remove_reader``), the guard drains (its answers meanwhile ask clients to
    close their keep-alive connections), and only then the server's own stop. A client's
    new connection waits in the listen backlog and is refused when the server closes
    it: it never reached the app, and is never half answered. A request may still come
    on a connection kept alive from before the stop: the server is stopped once none
    has been in flight for ``settle`` seconds (within ``drain_timeout``).
    """

    drains = False
    settle = 0.1

    def __init__(self, stopper: Stopper, loop: asyncio.AbstractEventLoop) -> None:
        self._stopper = stopper
        self._loop = loop
        self.name = stopper.name

    def refuse_new(self) -> None:
        """Take this process's listening sockets off the event loop (from another thread)."""
        stop_accepting(self._loop)

    def __call__(self) -> None:
        self._stopper()


def stop_accepting(loop: asyncio.AbstractEventLoop) -> int:
    """Take this process's listening sockets off ``loop`` (from another thread): no new
    connection is accepted there; the sockets stay open, for the server to close.
    Returns how many the loop was serving."""
    listening = _listening_fds()
    removed: list[int] = []
    done = threading.Event()

    def remove() -> None:
        try:
            removed.extend(fd for fd in listening if loop.remove_reader(fd))
        finally:
            done.set()

    with contextlib.suppress(RuntimeError):  # the loop already closed: nothing accepts
        loop.call_soon_threadsafe(remove)
        done.wait(timeout=5.0)
    return len(removed)


def _listening_fds() -> list[int]:
    """The file descriptors of this process's listening sockets (Linux: ``/proc``)."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            try:
                # fromfd works on a duplicate: closing it leaves the descriptor open.
                with socket.fromfd(int(name), socket.AF_INET, socket.SOCK_STREAM) as sock:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                        found.append(int(name))
            except OSError:  # not a socket, or closed since listed
                continue
    return found


class InterruptMain:
    """SIGINT to the main thread, which raises ``KeyboardInterrupt`` there."""

    name = "SIGINT to the main thread"
    drains = False

    def __call__(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


class TerminateMaster:
    """SIGTERM to the pre-fork master ``pid``: a graceful stop of every worker.

    From a worker the master is its parent (:func:`~.prefork.master`), checked again
    now: one that died meanwhile left this process to another parent, which is sent
    nothing; this process then stops alone, by SIGTERM to itself. From a one-process
    server, ``pid`` is its own.
    """

    name = "SIGTERM to the master process"

    def __init__(self, pid: int, *, drains: bool = True) -> None:
        self._pid = pid
        #: False where the master would cut what is in flight here (granian's websockets):
        #: the guard drains this process first.
        self.drains = drains

    def __call__(self) -> None:
        pid = self._pid
        if pid != os.getpid() and checked_master() != pid:
            pid = os.getpid()
        os.kill(pid, signal.SIGTERM)


def checked_master() -> int | None:
    """:func:`~.prefork.master`, and one line if this worker's master died: the stop
    then signals no one else, and this process stops alone, by its own path."""
    pid = master()
    gone = lost_master()
    if pid is None and gone is not None:
        say(f"the master process {gone} is gone; stopping this process alone")
    return pid


class CallStop:
    """Call the server object's own stop method (``shutdown`` or ``stop``)."""

    drains = False

    def __init__(self, server: Any, method: str) -> None:
        self._server = server
        self._method = method
        self.name = f"{type(server).__name__}.{method}()"

    def __call__(self) -> None:
        getattr(self._server, self._method)()


class EndServeLoop:
    """``BaseServer.shutdown()``, at once; then SIGINT to the main thread if it was not the one
    serving.

    ``shutdown()`` waits for the loop to end, so it runs off the server's threads
    (the shutdown thread). Where the loop runs in a thread of its own while the
    main thread does something else (werkzeug's reloader watching files), the
    process would go on without serving: SIGINT ends that main thread too, well
    away from any accept loop.
    """

    name = "BaseServer.shutdown()"
    drains = False

    def __init__(self, server: socketserver.BaseServer, *, in_main_thread: bool) -> None:
        self._server = server
        self._in_main_thread = in_main_thread

    def __call__(self) -> None:
        stopping = threading.Thread(target=self._server.shutdown, name="covguard-stop")
        stopping.start()
        # serve_forever() looks at the request to stop between two select() calls of
        # half a second each: a bare connection (no request: nothing reaches the app)
        # wakes it now. The server's own handler thread closes it.
        while stopping.is_alive():
            _knock(self._server.server_address)
            stopping.join(0.02)
        if not self._in_main_thread:
            InterruptMain()()


def _knock(address: Any) -> None:
    with contextlib.suppress(OSError):
        socket.create_connection(tuple(address)[:2], timeout=1).close()


def find_asgi_stopper(master_pid: int | None) -> Stopper:
    """How to stop the ASGI server of this process, where its own module knows no better
    (:meth:`~.servers.base.ServerSupport.asgi_stopper`).

    A worker: SIGTERM to its master ``master_pid``, which stops every worker gracefully. One
    process whose event loop handles SIGTERM (``loop.add_signal_handler``): SIGTERM to
    itself, its own graceful stop, once the guard drained. Else SIGINT to the main thread.
    """
    if master_pid is not None:
        return TerminateMaster(master_pid)
    if _loop_handles(signal.SIGTERM):  # its stop cuts requests on keep-alive connections:
        return TerminateMaster(os.getpid(), drains=False)  # the guard drains first
    return InterruptMain()


def _loop_handles(signum: int) -> bool:
    """True if an asyncio event loop of this process handles ``signum``: the C-level
    handler asyncio installs then is its no-op, the loop reads the signal from its
    wake-up descriptor."""
    handler = signal.getsignal(signum)
    return getattr(handler, "__module__", "") == "asyncio.unix_events" and (
        getattr(handler, "__name__", "") == "_sighandler_noop"
    )


def find_stopper(environ: WSGIEnvironment) -> Stopper:
    """Choose how to stop the server that is serving ``environ``.

    Call it from the request's thread: socketserver and cheroot servers are
    found on that thread's call stack.
    """
    pid = checked_master() if serves_prefork(environ) else None
    if pid is not None:
        return TerminateMaster(pid)
    server = _server_on_stack()
    if isinstance(server, socketserver.BaseServer):
        return EndServeLoop(server, in_main_thread=_serving_in_main_thread(server))
    if server is not None:  # cheroot
        return CallStop(server, "stop")
    return InterruptMain()


def handler_threads() -> list[threading.Thread]:
    """The live threads a threading socketserver (werkzeug, ``ThreadingWSGIServer``) made,
    one per connection, that have not finished with it yet.

    werkzeug makes them daemons and does not join them: at exit the interpreter
    stops them wherever they are, between a response's headers and its body if
    need be. A connection accepted before the serve loop ended can reach the
    application only after the middleware drained, so the last wait at exit is
    for these threads too. ``threading`` names a thread after its target
    (``Thread-7 (process_request_thread)``), which is how they are recognised.
    """
    return [
        thread
        for thread in threading.enumerate()
        if thread.daemon and thread.name.endswith("(process_request_thread)")
    ]


def _serving_in_main_thread(server: socketserver.BaseServer) -> bool:
    """True if ``server.serve_forever()`` runs in the main thread (or cannot be found)."""
    for ident, frame in sys._current_frames().items():
        while frame is not None:
            if frame.f_code.co_name == "serve_forever" and frame.f_locals.get("self") is server:
                return ident == threading.main_thread().ident
            frame = frame.f_back  # type: ignore[assignment]
    return True


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
