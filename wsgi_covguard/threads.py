"""Our own threads leave the server's signals to the server.

A signal sent to a process goes to any one of its threads that does not block it.
CPython runs the handler in the main thread, but only wakes it if the signal was
delivered there: a main thread blocked on a lock (a worker that waits on a
``threading.Event`` until SIGTERM) sleeps on when the kernel picks another thread,
and the server never stops. So every thread wsgi_covguard starts blocks the signals
servers stop or reload on, before it runs anything.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["leave_signals", "start_thread"]

#: The signals servers stop and reload on: for their threads, never ours.
SERVER_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})


def leave_signals() -> None:
    """Block the servers' signals in the calling thread (one of ours)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SERVER_SIGNALS)


def start_thread(
    target: Callable[..., object], *args: Any, name: str, daemon: bool = True
) -> threading.Thread:
    """Start ``target(*args)`` on a thread of ours, the servers' signals blocked there."""

    def run() -> None:
        leave_signals()
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()
    return thread
