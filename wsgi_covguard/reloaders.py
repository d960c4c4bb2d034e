"""Reloaders that serve from a worker of their own and start another when it ends: hupper's
(``pserve --reload``, ``hupper -m waitress ...``).

A worker that ends on a shutdown asked through the route leaves hupper's monitor waiting for
a file to change: the command never returns. So the stop also tells the monitor to end, once
this worker has saved for good (:func:`~.ending.after_last_save`): SIGINT to it, checked to be
this process's parent still. hupper gives a worker it stops one second to end before it
kills it: told at the last moment, the worker is gone by then, and the monitor exits with its
status. (werkzeug's reloader needs none of this: it ends with its child's status.)
"""

from __future__ import annotations

import functools
import os
import signal
import sys

from . import ending
from .log import say
from .stopping import Stopper

__all__ = ["monitor_at_open", "stopping_the_monitor_too"]


@functools.cache
def monitor_at_open() -> int | None:
    """The pid of the hupper monitor this process serves under, if any: its parent when the
    first door opened (asked then, while it is the parent for sure)."""
    hupper = sys.modules.get("hupper")
    if hupper is None or not hupper.is_active():
        return None
    return os.getppid()


def stopping_the_monitor_too(stopper: Stopper) -> Stopper:
    """``stopper``, and hupper's monitor ended after it, if this process serves under one."""
    monitor = monitor_at_open()
    return stopper if monitor is None else _MonitorToo(stopper, monitor)


class _MonitorToo(Stopper):
    """``stopper``, and hupper's monitor told to end once this worker saved for good."""

    def __init__(self, stopper: Stopper, monitor: int) -> None:
        self._stopper = stopper
        self._monitor = monitor
        self.name = f"{stopper.name}, then SIGINT to the reloader ({monitor})"
        self.drains = stopper.drains

    def before_drain(self) -> float:
        return self._stopper.before_drain()

    def __call__(self) -> None:
        ending.after_last_save(functools.partial(_end_monitor, self._monitor))
        self._stopper()


def _end_monitor(monitor: int) -> None:
    if os.getppid() != monitor:  # it died, and this process went to another parent
        say(f"the reloader {monitor} is gone; nothing more to stop")
        return
    os.kill(monitor, signal.SIGINT)
