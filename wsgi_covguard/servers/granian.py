"""granian: a master and worker processes (WSGI or ASGI); SIGTERM to the master stops all."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Any

from .. import ending
from ..stopping import Stopper, TerminateMaster, checked_master
from ..threads import start_thread
from .base import Options, Server, SupervisedSupport


class GranianSupport(SupervisedSupport):
    """What wsgi_covguard knows of granian."""

    name = "granian"
    requires = "granian"
    extra = "granian"
    serves = "both"
    binds_when_run = True
    takes_workers = True
    loads_in_workers = True

    def launch(self, load: Callable[[], Any], host: str, port: int, options: Options) -> Server:
        from granian import Granian
        from granian.constants import Interfaces

        # granian binds in its own code, one socket per worker on Linux: a busy port is
        # found here, and --port 0 becomes a free port chosen now.
        with socket.create_server((host, port)) as probe:
            port = probe.getsockname()[1]
        # granian logs to stdout; ours is for the ready line alone, like every server's.
        to_stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        handlers = {
            "console": {**to_stderr, "formatter": "generic"},
            "access": {**to_stderr, "formatter": "access"},
        }
        server = Granian(
            "covguard", address=host, port=port,
            interface=Interfaces.ASGI if options.asgi else Interfaces.WSGI,
            workers=options.workers or 1, blocking_threads=options.threads,
            log_dictconfig={"handlers": handlers},
        )  # fmt: skip

        def run() -> None:
            # The target is imported by each worker through ``load``, never here: with
            # fork, lines run in this process before the fork are not the worker's.
            server.serve(target_loader=load, wrap_loader=False)

        return Server(self.name, host, port, run, TerminateMaster(os.getpid()))

    def serving_here(self) -> bool:
        return "granian" in sys.modules

    def opening(self) -> None:
        """In a worker that has not begun to serve, let SIGTERM end it (it saves).

        granian forks its workers, and a forked worker keeps its master's SIGTERM
        handler (a no-op there) until it serves and installs its own: a stop that comes
        while a worker boots is lost, and the master waits for that worker for ever.
        From the door's opening to granian's own handler, SIGTERM ends the worker here;
        the stop waits for booting siblings to open their door
        (:meth:`~wsgi_covguard.guard.Guard._drain_save_stop`).
        """
        import multiprocessing

        if multiprocessing.parent_process() is None:
            return
        if threading.current_thread() is threading.main_thread():
            ending.handle(signal.SIGTERM, _end_booting_worker)

    def asgi_serving(self) -> None:
        """In a worker, watch for its master's terminate (:meth:`ending_early`).

        Not with a Python handler: once its own graceful stop began, the worker's main
        thread waits inside granian's runtime, where no Python handler runs. The signal
        module's wake-up descriptor is written to from the C handler, whatever the main
        thread does: the loop's is set to ours, relayed to the loop's by a thread.
        """
        import multiprocessing

        if multiprocessing.parent_process() is None or _relaying:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        ours, relay_to = os.pipe()
        os.set_blocking(relay_to, False)
        loops = signal.set_wakeup_fd(relay_to, warn_on_full_buffer=False)
        if loops == -1:  # no loop reads one: nothing to relay to, and nothing to watch
            signal.set_wakeup_fd(-1)
            os.close(ours)
            os.close(relay_to)
            return
        # Its own copy: the loop closes its socket at the end, and the number may be reused.
        _relaying.append(relay_to)
        start_thread(_relay, ours, os.dup(loops), name="covguard-granian-signals")

    def ending_early(self) -> None:
        """A worker waits for its master's terminate (up to :data:`MASTER_LATE`) first.

        granian's master takes a worker's end it did not ask for as a crash: "Unexpected
        exit from worker-1", and it exits 1. A Ctrl-C reaches the master and its workers
        together, and a master under load ran its handler more than half a second after
        its worker had ended the drain, and itself. (A WSGI worker's main thread serves
        inside granian: its master's terminate is not watched, and not waited for.)
        """
        master = os.getppid()
        deadline = time.monotonic() + MASTER_LATE
        while _relaying and not _stopped_by_master.wait(0.05):
            if time.monotonic() > deadline or os.getppid() != master:
                return  # the master is that late, or gone

    def wsgi_stopper(self, environ: Mapping[str, Any]) -> Stopper | None:
        """SIGTERM to the master, which terminates each worker: it finishes its requests
        and saves as multiprocessing ends it (a worker stopped behind the master's back
        is an "unexpected exit")."""
        pid = checked_master() if environ.get("SERVER_SOFTWARE") == "Granian" else None
        return None if pid is None else TerminateMaster(pid)

    def cuts_streams(self, environ: Mapping[str, Any]) -> bool:
        """granian iterates a WSGI body from Rust, logs any exception with a traceback,
        and ends a body that stops early as if it were whole: the stream goes on until
        the process ends, half a second later
        (:meth:`~wsgi_covguard.guard.Guard._end_at_the_latest`), which cuts it."""
        return environ.get("SERVER_SOFTWARE") != "Granian"

    def asgi_stopper(self, master: int | None, loop: Any) -> Stopper | None:
        # granian closes open websockets at once (1006) when its master stops it: the
        # door drains first. (Its listening sockets are its Rust runtime's, not the loop's.)
        return None if master is None else TerminateMaster(master, drains=False)


#: How long a worker ended at the deadline waits for its master's terminate, at most.
MASTER_LATE = 5.0
#: Set in a worker once its master asked it to stop (SIGTERM, the master's terminate()).
_stopped_by_master = threading.Event()
#: The wake-up descriptor this process relays, once it does.
_relaying: list[int] = []


def _relay(ours: int, loops: int) -> None:
    """Pass each signal number the C handler writes on to the loop's descriptor, noting
    SIGTERM's."""
    while data := os.read(ours, 512):
        if signal.SIGTERM in data:
            _stopped_by_master.set()
        with contextlib.suppress(OSError):  # full (the loop no longer reads it): dropped
            os.write(loops, data)


def _end_booting_worker(signum: int, frame: FrameType | None) -> None:
    """End a worker that has not served yet; the data is saved at exit.

    Python runs the handler between two bytecodes of the main thread, wherever it is:
    in a weakref or ``__del__`` callback (importlib makes some while the app is
    imported) the SystemExit is printed as "ignored" and the worker boots on, unseen
    by a master that then waits for it. :func:`_ask_again` sends the signal again.
    """
    global _kept_hook
    if sys.unraisablehook is not _ask_again:
        _kept_hook, sys.unraisablehook = sys.unraisablehook, _ask_again
    raise SystemExit(0)


#: The unraisable hook :func:`_ask_again` replaced, for every other exception.
_kept_hook: Callable[[Any], object] = sys.__unraisablehook__


def _ask_again(unraisable: Any) -> None:
    """A SystemExit lost in a callback: SIGTERM again, from another thread, soon.

    Not from here: the handler would run at once, in this hook, and be lost again.
    """
    if _raised_by(unraisable.exc_traceback, _end_booting_worker):
        start_thread(_terminate_soon, name="covguard-ask-again")
        return
    _kept_hook(unraisable)


def _terminate_soon() -> None:
    time.sleep(0.1)  # the callback is over, the main thread back in plain code
    os.kill(os.getpid(), signal.SIGTERM)


def _raised_by(traceback: TracebackType | None, function: Callable[..., Any]) -> bool:
    """True if the exception of ``traceback`` was raised in ``function`` (its last frame)."""
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and traceback.tb_frame.f_code is function.__code__
