"""Ctrl-C during the stop ends its drain at once.

A user who presses Ctrl-C while a shutdown drains (a stream still open, a slow
handler) wants it over now, not at ``drain_timeout``. The terminal sends SIGINT to
every process of the server; a pre-fork master may pass its quick stop on to its
workers as SIGQUIT. Left to the servers, that interrupt raised inside a request (a
``sys.exit`` in the server's handler: a 500 and a traceback), signalled the stop twice
(a ``KeyboardInterrupt`` in the server's shutdown) or changed nothing (the server
waited out the drain). So while a process drains, the
interrupt is ours: the drain ends now, the stop goes on by its own clean path (the
requests still running are ended as at the deadline, the data saved), and the
server's own handler is not called. At any other time the server's handler runs, as
if we were not there.

Our handler stands in front of the server's: the WSGI door puts it there when it opens
(the WSGI servers' handlers are in place when the app is imported), the ASGI door at the
lifespan startup, once the server's are (an ASGI server may set its own after the
import). Never in front of Python's default before an event loop starts: ``asyncio.run``
puts its own SIGINT handler in place only where it finds Python's default (so does
Twisted), and a server may raise a SIGINT it caught again into that handler once it has
stopped: ours there, it became a ``KeyboardInterrupt`` inside the loop, a traceback. A
signal an asyncio loop reads from its wake-up descriptor still reaches the loop's
callback: there the drain ends now as well, and the server's callback (a graceful stop
already under way) runs too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import ending

__all__ = ["listen", "on_interrupt"]

#: Each door's guard: ``hurry()`` ends its drain now, True if one was under way.
_hurries: list[Callable[[], bool]] = []


def on_interrupt(hurry: Callable[[], bool]) -> None:
    """Call ``hurry()`` on each interrupt once :func:`listen` was called; the signal is
    ours when one returns True."""
    _hurries.append(hurry)


def listen() -> None:
    """Put our handler in front of this process's SIGINT handler, and of its SIGQUIT
    handler where the server handles SIGQUIT itself (a master's quick stop). Only the
    main thread can; a handler already ours is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        return
    if "twisted.internet.reactor" in sys.modules:
        # Twisted puts its own SIGINT handler in place only where it finds
        # Python's default, and its reactor stops at once: leave it to Twisted.
        return
    for signum in (signal.SIGINT, signal.SIGQUIT):
        current = signal.getsignal(signum)
        if isinstance(current, _Interrupt) or current is None:  # None: not set from Python
            continue
        if signum == signal.SIGQUIT and not callable(current):
            continue  # SIGQUIT's default (a core dump) is not an interrupt of ours
        ending.handle(signum, _Interrupt(current))


class _Interrupt:
    """The handler in front of ``previous``: the drain ends now, or ``previous`` runs."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.while_leaving = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if [hurry for hurry in list(_hurries) if hurry()]:  # every guard of the process
            return
        if _leaving(frame):
            # The process is on its way out already, joining its threads or running its
            # exit handlers: a pre-fork master's quick stop, sent to a worker whose graceful
            # stop was over, raised the server's ``sys.exit`` there, a traceback. Once
            # only: a second interrupt is a user's, out of an exit that hangs.
            self.while_leaving += 1
            if self.while_leaving == 1:
                return
        previous = self.previous
        if previous is signal.SIG_IGN:
            return
        if previous is signal.SIG_DFL:  # what the default would have done
            ending.handle(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        previous(signum, frame)


def _leaving(frame: FrameType | None) -> bool:
    """True once the interpreter has begun to leave: in ``threading._shutdown`` (it joins
    the threads, then marks the main thread stopped) or after it (the exit handlers)."""
    if not threading.main_thread().is_alive():
        return True
    while frame is not None:
        if frame.f_code is threading._shutdown.__code__:  # type: ignore[attr-defined]
            return True
        frame = frame.f_back
    return False
