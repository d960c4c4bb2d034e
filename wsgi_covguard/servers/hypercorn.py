"""hypercorn (ASGI): its event loop's SIGTERM handler is its graceful stop.

Started from its own command line it serves from worker processes (one or more),
which stop when their master sets a shared event. Each worker watches that event
(:func:`watch_stop`), so that its drain begins with the master's stop however that
was asked, and keeps its data when the master then terminates it.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .. import ending
from ..stopping import StopAcceptingFirst, Stopper, TerminateMaster
from ..threads import start_thread
from .base import OpenGuard, Options, Server, SupervisedSupport


def stop_event() -> Any | None:
    """In a worker of hypercorn's command line, the event its master sets to stop them all
    (the worker's own ``shutdown_event`` argument); None elsewhere."""
    if "hypercorn" not in sys.modules:
        return None
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return None
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    event = kwargs.get("shutdown_event") if isinstance(kwargs, dict) else None
    return event if hasattr(event, "is_set") and hasattr(event, "wait") else None


#: Set once this worker has seen its master's shutdown event set.
_STOPPING = threading.Event()


def watch_stop(event: Any, then: Callable[[], object]) -> None:
    """In a hypercorn worker: once its master's shutdown ``event`` is set, note it (for
    :func:`_worker_sigterm`) and call ``then()``.

    The event is polled, never waited on: a process waiting on a multiprocessing
    event makes the master's ``set()`` wait for it to wake, with the event's lock held,
    and a second signal to the master meanwhile deadlocked it in its own handler
    (``kill -TERM`` twice: 1 hang in 10 when a worker waited, none when polled).
    """
    while not event.is_set():
        time.sleep(0.02)
    _STOPPING.set()
    then()


#: Set by :func:`_stop_or_exit` when a SIGTERM came with no stop under way.
_EXITING = threading.Event()


def _worker_sigterm(event: Any, signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a hypercorn worker: wait for the graceful stop if one is under way.

    hypercorn's master sets the workers' shutdown ``event``, and as soon as the first
    worker has stopped it terminates the others, cutting their graceful stop (and
    their requests in flight) and ending them past ``atexit``: their data would be
    lost. While the event is set the worker is stopping already: it goes on, and
    saves at its exit (the master waits for it). Otherwise it exits now, and saves.

    A signal handler must not take the event's lock, which the interrupted thread may
    hold; and what :func:`watch_stop` saw may be 20 ms late (more with busy CPUs: a
    worker ended that way skipped its lifespan shutdown). Not known here, the event is
    asked from another thread, :func:`_stop_or_exit`.
    """
    if _STOPPING.is_set():
        return
    if _EXITING.is_set():
        raise SystemExit(128 + signum)
    start_thread(_stop_or_exit, event, signum, name="covguard-sigterm")


def _stop_or_exit(event: Any, signum: int) -> None:
    """The event set: the stop is under way, the worker goes on. Otherwise the signal
    comes again and :func:`_worker_sigterm` ends the worker."""
    if event.is_set():
        return
    _EXITING.set()
    os.kill(os.getpid(), signum)


class HypercornSupport(SupervisedSupport):
    """What wsgi_covguard knows of hypercorn."""

    name = "hypercorn"
    requires = "hypercorn"
    extra = "hypercorn"
    serves = "asgi"
    asyncio_choice = "-k asyncio, its default"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        import asyncio

        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        listener = socket.create_server((host, port))
        config = Config()

        def run() -> None:
            config.bind = [f"fd://{listener.fileno()}"]  # held open until hypercorn takes it
            # Without a shutdown trigger, hypercorn's loop handles SIGINT and SIGTERM: its
            # graceful stop (connections finish, the lifespan shutdown runs), then run()
            # returns.
            asyncio.run(serve(app, config))

        return Server(self.name, host, listener.getsockname()[1], run,
                      TerminateMaster(os.getpid()))  # fmt: skip

    def serving_here(self) -> bool:
        """A worker of hypercorn's command line. (One process of ``covguard serve``: its
        event loop's SIGTERM handler tells, :func:`~wsgi_covguard.stopping.find_asgi_stopper`.)"""
        return stop_event() is not None

    def asgi_opened(self, guard: OpenGuard) -> None:
        event = stop_event()
        if event is None:
            return
        if threading.current_thread() is threading.main_thread():
            ending.handle(signal.SIGTERM, functools.partial(_worker_sigterm, event))

        # The workers stop when their master sets the event, however it was asked to
        # stop; an open websocket would hold the worker (for ever on 3.12+):
        # drain_timeout after the event, the guard ends those still open. Set while this
        # worker drains, the master was interrupted (Ctrl-C): the drain ends now.
        def stopping() -> None:
            if not guard.hurry():
                guard.drain()

        start_thread(watch_stop, event, stopping, name="covguard-drain")

    def asgi_stopper(self, master: int | None, loop: Any) -> Stopper | None:
        if master is None:
            return None
        # Its own stop cuts requests that arrive as it begins: no new connection here,
        # the door drains, then SIGTERM to the master.
        return StopAcceptingFirst(TerminateMaster(master, drains=False), loop)
