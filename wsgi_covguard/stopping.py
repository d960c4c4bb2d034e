"""How to make *this* server stop through its own clean path: the mechanisms.

No server offers a portable "stop", but each has a clean way out, measured on each
server we support. A server's module (:mod:`.servers`) chooses among these
(:meth:`~.servers.base.ServerSupport.wsgi_stopper`, ``asgi_stopper``), or leaves the
choice to :func:`find_wsgi_stopper` and :func:`find_asgi_stopper`:

=========================  ====================================================
stopper                    what it does
=========================  ====================================================
:class:`InterruptMain`     SIGINT to the main thread: the serve loop catches
                           ``KeyboardInterrupt`` (or the reactor's handler stops
                           it), exits 0
:class:`EndServeLoop`      ``BaseServer.shutdown()`` from another thread, for
                           any socketserver server (found on the request's
                           stack); then SIGINT to the main thread if the loop
                           ran in another one (a reloader's main thread watches
                           files)
:class:`TerminateMaster`   SIGTERM to the pre-fork master (the parent, checked:
                           :func:`~.prefork.master`), whose graceful stop ends
                           every worker through ``atexit``; or to this process,
                           whose event loop handles it
:class:`CallStop`          the server object's own stop method, from another
                           thread
:class:`StopAcceptingFirst`      no new connection accepted, the guard drains, then
                           another of these
=========================  ====================================================

The table of which server stops how is in ``docs/ARCHITECTURE.md``.

Never a ``KeyboardInterrupt`` in a socketserver's accept loop: landing while
``process_request`` starts a handler thread (``Thread.start()`` waits), it makes
socketserver shut down the connection that thread is answering, and the client
gets the headers without the body. ``shutdown()`` ends the loop between two
requests instead.

The WSGI stopper is chosen in the request thread (where the server object can be
found on the call stack); the :class:`Stopper` chosen runs later, from the
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
from typing import Any, TypeVar

from .log import say
from .prefork import lost_master, master

_S = TypeVar("_S")

__all__ = [
    "CallStop",
    "EndServeLoop",
    "InterruptMain",
    "StopAcceptingFirst",
    "Stopper",
    "TerminateMaster",
    "checked_master",
    "find_asgi_stopper",
    "find_wsgi_stopper",
    "handler_threads",
    "server_on_stack",
    "stop_accepting",
]


class Stopper:
    """Stops the server; called once, off the server's own threads.

    ``drains`` is True when the server itself lets requests in flight finish
    and every process exit through ``atexit`` (a pre-fork master's graceful stop): the
    middleware then neither drains nor saves first, so each worker saves once,
    at its own exit.
    """

    name: str
    drains: bool = False

    def __call__(self) -> None:
        raise NotImplementedError

    def before_drain(self) -> float:
        """What the stop needs done before the guard drains (nothing, here). Returns how
        long no request must have been in flight before the stop (0: the drain is
        enough)."""
        return 0.0


class StopAcceptingFirst(Stopper):
    """No new connection accepted on ``loop``; then ``stopper``, once the guard drained.

    For ASGI servers whose own stop cuts what arrives as it begins: one that marks its
    connections terminated *before* it closes its listening sockets closes a connection
    it accepts meanwhile just as its request reaches the app; a reactor cancels whatever
    runs when it stops. The stop the other way round, as a graceful
    server does it: the listening sockets are taken off the event loop first
    (``loop.remove_reader``), the guard drains (its answers meanwhile ask clients to
    close their keep-alive connections), and only then the server's own stop. A client's
    new connection waits in the listen backlog and is refused when the server closes
    it: it never reached the app, and is never half answered. A request may still come
    on a connection kept alive from before the stop: the server is stopped once none
    has been in flight for ``settle`` seconds (within ``drain_timeout``).
    """

    #: How long no request must have been in flight, after the drain, before the stop.
    settle = 0.1

    def __init__(self, stopper: Stopper, loop: asyncio.AbstractEventLoop) -> None:
        self._stopper = stopper
        self._loop = loop
        self.name = stopper.name

    def before_drain(self) -> float:
        """Take this process's listening sockets off the event loop (from another thread)."""
        stop_accepting(self._loop)
        return self.settle

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


class InterruptMain(Stopper):
    """SIGINT to the main thread, which raises ``KeyboardInterrupt`` there."""

    name = "SIGINT to the main thread"

    def __call__(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


class TerminateMaster(Stopper):
    """SIGTERM to the pre-fork master ``pid``: a graceful stop of every worker.

    From a worker the master is its parent (:func:`~.prefork.master`), checked again
    now: one that died meanwhile left this process to another parent, which is sent
    nothing; this process then stops alone, by SIGTERM to itself. From a one-process
    server, ``pid`` is its own.
    """

    name = "SIGTERM to the master process"

    def __init__(self, pid: int, *, drains: bool = True) -> None:
        self._pid = pid
        #: False where the master would cut what is in flight here (open websockets):
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


class CallStop(Stopper):
    """Call the server object's own stop method (``shutdown`` or ``stop``)."""

    def __init__(self, server: Any, method: str) -> None:
        self._server = server
        self._method = method
        self.name = f"{type(server).__name__}.{method}()"

    def __call__(self) -> None:
        getattr(self._server, self._method)()


class EndServeLoop(Stopper):
    """``BaseServer.shutdown()``, at once; then SIGINT to the main thread if it was not the one
    serving.

    ``shutdown()`` waits for the loop to end, so it runs off the server's threads
    (the shutdown thread). Where the loop runs in a thread of its own while the
    main thread does something else (a reloader watching files), the
    process would go on without serving: SIGINT ends that main thread too, well
    away from any accept loop.
    """

    name = "BaseServer.shutdown()"

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


def find_wsgi_stopper() -> Stopper:
    """How to stop the WSGI server of this request, where its own module knows no better
    (:meth:`~.servers.base.ServerSupport.wsgi_stopper`).

    Call it from the request's thread: a socketserver server is found on that thread's
    call stack, and ends its serve loop (:class:`EndServeLoop`). Else SIGINT to the
    main thread.
    """
    server = server_on_stack(socketserver.BaseServer)
    if server is not None:
        return EndServeLoop(server, in_main_thread=_serving_in_main_thread(server))
    return InterruptMain()


def handler_threads() -> list[threading.Thread]:
    """The live threads a threading socketserver (``ThreadingMixIn``) made,
    one per connection, that have not finished with it yet.

    Servers make them daemons and do not join them: at exit the interpreter
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


def server_on_stack(kind: type[_S]) -> _S | None:
    """The server of type ``kind`` whose handler called us, on this thread's stack, if any:
    a frame's ``self``, or that object's ``server``."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        try:
            attached = getattr(owner, "server", None)
        except Exception:  # a proxy object whose attribute lookup fails
            attached = None
        for candidate in (owner, attached):
            if isinstance(candidate, kind):
                return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None
