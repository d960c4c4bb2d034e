"""uvicorn (ASGI): its own ``should_exit`` flag, as its signal handler sets it.

Its SIGTERM, though, would lose the data: uvicorn stops gracefully and then raises
the signal again with the default handler back, which ends the process past
``atexit``. So under uvicorn SIGTERM sets the flag, and the process dies of it once
the session has finished and saved (:meth:`UvicornSupport.asgi_opened`).
"""

from __future__ import annotations

import gc
import signal
import socket
import threading
import types
from types import FrameType
from typing import Any

from .. import ending
from ..stopping import StopAcceptingFirst, Stopper
from .base import OpenGuard, Options, Server, SupervisedSupport


class SetShouldExit(Stopper):
    """Set the server's ``should_exit`` flag, which its main loop checks every 0.1 s.

    uvicorn's signal handler does the same and also notes the signal, to raise it
    again once it has stopped (the process then dies of it, past ``atexit``).
    """

    name = "should_exit = True"

    def __init__(self, server: Any) -> None:
        self._server = server

    def __call__(self) -> None:
        self._server.should_exit = True


def _serving() -> Any | None:
    """The uvicorn ``Server`` serving this process, found through the signal handler it
    installs while it serves (its bound ``handle_exit``), if any."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    if getattr(handler, "__name__", "") == "handle_exit" and hasattr(server, "should_exit"):
        return server
    return None


def _put_back_at_the_stop(server: Any) -> dict[int, Any] | None:
    """The handlers ``server.capture_signals()`` puts back once the server has stopped.

    uvicorn keeps them in a local, ``original_handlers``, of that generator, suspended
    while the server serves. Nothing refers to it but the server's running coroutine, so
    it is looked for among every object the garbage collector follows (30 ms with Django
    imported; once per process, when the app opens). ``type() is``: a lazy object of the
    app's (Django's settings) would evaluate itself for ``isinstance``.
    """
    from uvicorn.server import Server

    code = getattr(getattr(Server.capture_signals, "__wrapped__", None), "__code__", None)
    for held in gc.get_objects():
        if type(held) is types.GeneratorType and held.gi_code is code and held.gi_frame:
            names = held.gi_frame.f_locals
            handlers = names.get("original_handlers")
            if names.get("self") is server and isinstance(handlers, dict):
                return handlers
    return None


class UvicornSupport(SupervisedSupport):
    """What wsgi_covguard knows of uvicorn."""

    name = "uvicorn"
    requires = "uvicorn"
    extra = "uvicorn"
    serves = "asgi"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        import uvicorn
        from uvicorn.config import LOGGING_CONFIG

        listener = socket.create_server((host, port))
        # uvicorn logs requests to stdout; ours is for the ready line alone.
        logging_config = {**LOGGING_CONFIG, "handlers": {
            name: {**handler, "stream": "ext://sys.stderr"}
            for name, handler in LOGGING_CONFIG["handlers"].items()
        }}  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, log_config=logging_config))

        def run() -> None:
            server.run(sockets=[listener])

        return Server(self.name, host, listener.getsockname()[1], run, SetShouldExit(server))

    def serving_here(self) -> bool:
        return _serving() is not None

    def asgi_opened(self, guard: OpenGuard) -> None:
        """Let SIGTERM stop gracefully, save, and only then end the process
        (:func:`~wsgi_covguard.ending.die_of_at_exit`)."""
        server = _serving()
        if server is None or threading.current_thread() is not threading.main_thread():
            return

        def graceful(signum: int, frame: FrameType | None) -> None:
            server.should_exit = True
            ending.die_of_at_exit(signal.SIGTERM)  # once saved, as its sender expects

        ending.handle(signal.SIGTERM, graceful)
        # A SIGTERM that came while this process booted (a worker's supervisor stopping:
        # Ctrl-C or SIGTERM to it) was caught by uvicorn, which raises it again once it has
        # stopped, with the default handler back: the worker died past atexit, its data
        # lost. Ours now.
        captured = getattr(server, "_captured_signals", None)
        if isinstance(captured, list) and signal.SIGTERM in captured:
            captured[:] = [signum for signum in captured if signum != signal.SIGTERM]
            graceful(signal.SIGTERM, None)  # (twice, seen)
        # And once stopped, uvicorn puts back the handlers it found: SIGTERM's default,
        # where the app was imported while it served (a worker). A supervisor's SIGTERM
        # arriving then, before the final save (a worker's Ctrl-C stop: the supervisor
        # terminates each worker as well), ended the worker with its data.
        restored = _put_back_at_the_stop(server)
        if restored is not None and restored.get(signal.SIGTERM) is signal.SIG_DFL:
            restored[signal.SIGTERM] = ending.save_then_die

    def asgi_stopper(self, master: int | None, loop: Any) -> Stopper | None:
        server = _serving()
        if master is None and server is not None:
            return StopAcceptingFirst(SetShouldExit(server), loop)
        return None  # uvicorn --workers: SIGTERM to the master, which drains them
