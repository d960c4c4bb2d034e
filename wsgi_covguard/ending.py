"""The process's end: every signal handler and exit step wsgi_covguard adds, and their order.

A stop asked through the shutdown route runs in the guard
(:meth:`~.guard.Guard.begin_shutdown`): **drain** the requests in flight, **save**, tell
the **siblings** (a pre-fork server's other processes), **stop** the server by its own
path; the process then leaves, and at its exit, in this order:

1. :func:`on_exit_drain` steps: the requests that arrived since, drained. Registered
   when a door opens, after the app was imported: atexit runs the last registered
   first, so the app's own exit handlers have not yet closed what its requests use.
2. the app's own atexit handlers.
3. :func:`remove_at_exit` steps: this process's own files (its control socket, a
   generated token, the dashboard's pages), removed by it alone, never by a forked
   child that inherited the step.
4. the **final save** (:func:`save_on_every_way_out`), registered by
   :func:`~wsgi_covguard.start` before the app is imported: it runs after the app's
   handlers, whose lines are measured too. A multiprocessing child leaves through
   ``os._exit()``, past atexit: there it runs as multiprocessing's finalizer.
5. :func:`after_last_save` steps: what watches this process and must not outlive it is
   told, the data being safe (``pserve --reload``'s monitor, on a shutdown asked).
6. :func:`die_of_at_exit`: a process that took over a signal to save first dies of it,
   as its sender expects; a multiprocessing child, saved for good, ignores Ctrl-C while
   it joins its threads.

The signals, all set here (:func:`handle`), only from the main thread:

- SIGINT inherited ignored (``cmd &`` in a script) is restored: every SIGINT stop
  would silently do nothing.
- SIGTERM and SIGHUP, where the server has no handler of its own: save, then die of
  the signal (a server with its own exits through atexit, or goes on).
- during the last save, every ending signal is only noted (:func:`saving`).
- Ctrl-C while a process drains: :mod:`.interrupts` stands in front of the server's
  handler; a server's own needs: its module's hooks (:mod:`.servers`).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

from .errors import ExitCode

__all__ = [
    "ENDING_SIGNALS",
    "Finishing",
    "after_last_save",
    "die_of_at_exit",
    "handle",
    "on_exit_drain",
    "remove_at_exit",
    "save_on_every_way_out",
    "save_then_die",
    "saving",
]

#: The signals that end a server and run the final save on their way; and SIGQUIT, a
#: pre-fork master's quick stop of its workers (Ctrl-C, or SIGINT after SIGTERM, to the
#: master): one landing in a worker's last save left an empty data file.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

Handler = Callable[[int, FrameType | None], Any] | int | None


class Finishing(Protocol):
    """What the final save asks of the session (:class:`~.session.CoverageSession`)."""

    @property
    def unsaved(self) -> object | None:
        """Why the last save failed, if it did."""

    def finish(self) -> object | None:
        """Stop measuring and save, once per process; what could not be saved, if any."""


_drains: list[Callable[[], object]] = []
_removals: list[tuple[int, Callable[[], object]]] = []
_dying: list[int] = []
_afterwards: list[tuple[int, Callable[[], object]]] = []
_registered: set[str] = set()
_final: list[Finishing] = []


def handle(signum: int, handler: Handler) -> Handler:
    """Set ``handler`` for ``signum`` and return the one it replaces; from the main thread
    only (elsewhere nothing is set, and the current handler is returned)."""
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signum)
    return signal.signal(signum, handler)


def on_exit_drain(drain: Callable[[], object]) -> None:
    """Step 1 at exit: ``drain()``, before the app's own exit handlers."""
    _drains.append(drain)
    if "drain" not in _registered:
        _registered.add("drain")
        atexit.register(_run_drains)


def remove_at_exit(remove: Callable[[], object]) -> None:
    """Step 3 at exit: ``remove()``, in this process only (a forked child inherits the step)."""
    _register_last()
    _removals.append((os.getpid(), remove))


def after_last_save(step: Callable[[], object]) -> None:
    """Step 5 at exit: ``step()``, once the final save is over (or failed), in this process
    only."""
    _register_last()
    _afterwards.append((os.getpid(), step))


def die_of_at_exit(signum: int) -> None:
    """Step 6 at exit: the process dies of ``signum``, its default action, once saved."""
    _register_last()
    _dying.append(signum)


def save_on_every_way_out(session: Finishing) -> None:
    """Step 4: the final save, on every way out: a normal exit, a multiprocessing child's
    end, SIGTERM and SIGHUP where the server does not handle them, and SIGINT even if
    inherited ignored."""
    _register_last()
    _final.append(session)
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, session.finish, exitpriority=10)
        multiprocessing.util.Finalize(None, _saved_for_good, exitpriority=9)
        multiprocessing.util.Finalize(None, _exit_unsaved, (session,), exitpriority=-100)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        handle(signal.SIGINT, signal.default_int_handler)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            handle(signum, save_then_die)


def save_then_die(signum: int, frame: FrameType | None) -> None:
    """The handler of an ending signal whose default action would lose the data: the final
    save, then the process dies of the signal, as its sender expects."""
    for session in _final:
        session.finish()
    handle(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def saving() -> Iterator[None]:
    """The ending signals arriving now wait until the block (a save) is over.

    Python runs signal handlers in the main thread, between two bytecodes: a second
    SIGTERM during the last save ran the default action from the first's handler and
    ended the process with its data file half written. Here the handlers are set
    aside and a signal only noted. It is not acted on afterwards: every signal of
    these asks the process to end, and it is ending (a ``KeyboardInterrupt`` raised in
    an atexit handler would only print a traceback). Elsewhere than in the main
    thread, the main thread's handlers wait for the save's lock instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept: dict[int, Handler] = {}
    for signum in ENDING_SIGNALS:
        current = signal.getsignal(signum)
        if current is not None and current is not signal.SIG_IGN:  # None: not Python's own
            kept[signum] = handle(signum, _note_only)
    try:
        yield
    finally:
        for kept_signum, handler in kept.items():
            handle(kept_signum, handler)


def _note_only(signum: int, frame: FrameType | None) -> None:
    """A signal that came during the last save: the process is ending already."""


def _register_last() -> None:
    if "last" not in _registered:
        _registered.add("last")
        atexit.register(_run_last)


def _run_drains() -> None:
    for drain in list(_drains):
        drain()


def _run_last() -> None:
    """Steps 3 to 6, then the interpreter's last garbage collection spared the old heap.

    After the app's handlers have run, finalizing the interpreter collects garbage over
    the whole heap: a Django worker spends 0.2 s in it, and 16 pre-fork workers on two
    CPUs made one shutdown take 3.2 s instead of 1.0 s. ``gc.freeze`` takes what exists
    now out of that collection; Python never promised to finalize objects still alive
    at exit, and the handlers registered before ours (logging's flush) still run.
    """
    here = os.getpid()
    for owner, remove in list(_removals):
        if owner == here:
            with contextlib.suppress(OSError):
                remove()
    unsaved = [session.finish() for session in _final]
    gc.freeze()
    for owner, step in list(_afterwards):
        if owner == here:
            step()
    if any(reason is not None for reason in unsaved):
        # A process that could not save must not exit 0 as if it had (a CI job would
        # pass with no data). atexit cannot change the exit status: the handlers
        # registered before ours (logging's flush) run now, then the process ends.
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(ExitCode.NOT_SAVED)
    for signum in _dying[:1]:
        handle(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _saved_for_good() -> None:
    """A multiprocessing child, saved for good, ignores Ctrl-C from now on.

    Its last step, joining its threads (an executor's among them), comes after its
    finalizers: a Ctrl-C landing there, in a worker whose stop was over (a terminal's
    SIGINT reaches every process), printed a ``KeyboardInterrupt`` traceback."""
    for signum in (signal.SIGINT, signal.SIGQUIT):
        if callable(signal.getsignal(signum)):
            handle(signum, signal.SIG_IGN)


def _exit_unsaved(session: Finishing) -> None:
    """A multiprocessing child's last finalizer: exit 74 if its last save failed
    (multiprocessing turns the ``SystemExit`` into the process's exit status)."""
    if session.unsaved is not None:
        raise SystemExit(ExitCode.NOT_SAVED)
