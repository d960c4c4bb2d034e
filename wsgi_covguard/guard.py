"""What every door shares while measuring: its routes, the requests in flight, the stop.

A door (the WSGI middleware, the ASGI one) opens its :class:`Guard` with the
same options (:meth:`Guard.open`: nothing at all without a token), hands it the
requests that may be control requests (:attr:`Guard.routes`), and tells it when
each of the app's requests begins and ends, in its protocol's terms; the guard
knows no protocol. The shutdown route's answer, once on the wire, begins the stop: drain the
requests in flight (one ``drain_timeout`` in all, however many waits), save, then
the server's own stopper (:mod:`.stopping`); at exit, requests that came late are
waited for too.

The stop has one deadline, ``drain_timeout`` after it began, in every process of the
server (the one taking the shutdown tells its siblings). At the deadline the door
ends what is still running where it can: a streamed WSGI body at its next chunk, an
ASGI response under way, a websocket. What it cannot end (a handler still inside the
app, a server waiting on a client of its own) is ended with the process, half a
second later, once its data is saved (:meth:`Guard._end_at_the_latest`): the
server's own, longer waits (a master's graceful timeout, then its SIGKILL; a wait for
the server's threads, or for every task) are never reached.
A request is named as cut when it is, once. Ctrl-C while a process drains ends its drain
at once (:mod:`.interrupts`): the deadline is then, and the stop goes on as above.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from . import ending
from .control import LiveControls
from .dashboard import Dashboard
from .errors import ConfigError, ExitCode
from .interrupts import on_interrupt
from .log import say
from .messages import Answer, ControlRequest
from .prefork import remember_master
from .reloaders import monitor_at_open, stopping_the_monitor_too
from .routes import Route, Routes
from .servers import prefork_here, serving_here
from .session import CoverageSession
from .settings import CONTROL_PREFIX, SHUTDOWN_PATH, Settings
from .startup import get_session, start
from .stopping import Stopper, handler_threads
from .threads import start_thread
from .workers import Siblings

__all__ = ["Door", "Guard"]

#: Seconds past the stop's deadline that the process is given to end by itself, before it
#: is ended with its data saved (see :meth:`Guard._end_at_the_latest`).
LAST_GRACE = 0.5


@dataclass(frozen=True)
class Core:
    """What a door is built on in-process (:meth:`Door.in_process`): the ``session``, the
    ``siblings`` commands reach (default: this process alone), the ``stopper`` a
    shutdown calls (default: the server's, found from the request)."""

    session: CoverageSession
    siblings: Siblings | None = None
    stopper: Stopper | None = None


def _given(stopper: Stopper, request: ControlRequest) -> Stopper:
    return stopper


class Guard:
    """The requests in flight of one measuring process, and its shutdown.

    :param session: the measuring session.
    :param drain_timeout: seconds the whole stop may wait for requests in flight.
    :param name_of: how the door names a request it registered (``"GET /path"``).
    """

    def __init__(
        self, session: CoverageSession, *, drain_timeout: float, name_of: Callable[[Any], str]
    ) -> None:
        self.session = session
        self.drain_timeout = drain_timeout
        self._name_of = name_of
        self._lock = threading.Lock()
        # Notified when a request leaves, while a context switch waits (``_waiting``): the
        # requests themselves pay nothing for it otherwise.
        self._left = threading.Condition(self._lock)
        self._waiting = 0
        # The requests passed to the app and not finished: id(request) -> request.
        self._running: dict[int, Any] = {}
        # How to end those the door can end when the drain runs out (ASGI responses and
        # websockets): each returns True if it ended its request.
        self._enders: dict[int, Callable[[], bool]] = {}
        # When the stop must be over, once a shutdown began: one drain_timeout in all.
        self._deadline: float | None = None
        self._named_cut: set[int] = set()  # requests said to be cut (named once)
        self._stopping = False
        # Whether the stop is in the server's hands (its stopper called), how many drains
        # run, and whether an interrupt ended them: see :meth:`hurry`.
        self._handed_over = False
        self._drains = 0
        self._interrupted = False
        #: True once the deadline passed with requests in flight: the doors end theirs.
        self.ending = False
        #: The control routes (:meth:`open` makes them).
        self.routes: Routes
        #: This process and, under a pre-fork server, its siblings (:meth:`open` sets it).
        self.group: Siblings | None = None
        #: False for a guard built in-process (:meth:`Door.in_process`): it never ends the
        #: process (:meth:`_end_at_the_latest`).
        self.owns_process = True

    @classmethod
    def open(
        cls,
        *,
        token: str | None,
        shutdown_path: str,
        control_prefix: str,
        allow_remote: bool | None,
        drain_timeout: float,
        autosave: float | None,
        name_of: Callable[[Any], str],
        stopper_of: Callable[[ControlRequest], Stopper],
        stop_accepting: Callable[[], object] | None = None,
        core: Core | None = None,
    ) -> Guard | None:
        """A door's guard, with its routes; None without a token (the door is then inert).

        The options are the doors' own (see :class:`~wsgi_covguard.CovGuard`), checked
        here once; the token is the argument, else ``COVGUARD_TOKEN``, else the one
        :func:`~wsgi_covguard.start` was given. ``stopper_of`` finds, from the shutdown
        request, how to stop the server serving it; ``stop_accepting``, how this process
        stops accepting connections when a sibling's stop asks it to
        (:meth:`stop_accepting_and_drain`). ``core``: what to build on, in-process (the
        session, the siblings, the stopper, given); the process itself is then left alone:
        no signal handler, no exit step, no control socket, no line said.
        """
        for name, path in (("shutdown_path", shutdown_path), ("control_prefix", control_prefix)):
            if not path.startswith("/") or path.endswith("/") or len(path) < 2:
                raise ConfigError(f"{name} {path!r} must start with '/' and not end with one")
        if drain_timeout < 0:
            raise ConfigError(f"drain_timeout {drain_timeout!r} must be 0 seconds or more")
        session = get_session() if core is None else core.session
        settings = Settings.read(token=token, allow_remote=allow_remote, autosave=autosave)
        if settings.token is None and session is not None and session.token is not None:
            # No token here nor in the environment: the one start() was given.
            settings = Settings.read(
                token=session.token.reveal(), allow_remote=allow_remote, autosave=autosave
            )
        if settings.token is None:  # nothing started, nothing written, no route
            _say_inert()
            return None
        session = session or start(token=settings.token.reveal(), autosave=settings.autosave)
        assert session is not None  # a token was given
        session.remember_start_up()  # the app is imported: this is the start-up state
        guard = cls(session, drain_timeout=drain_timeout, name_of=name_of)

        if core is not None and core.stopper is not None:
            stopper_of = functools.partial(_given, core.stopper)

        def shutdown(request: ControlRequest) -> Answer:
            stopper = stopper_of(request)  # now, while the request is being served
            if core is None:  # a real door: a reloader it serves under must end too
                stopper = stopping_the_monitor_too(stopper)
            if not guard.stopping:  # who asked: the peer, never the token
                say(
                    f"shutdown asked by {request.remote_addr}: draining (up to"
                    f" {guard.drain_timeout:g}s), saving, then {stopper.name}"
                )
            body = json.dumps({"status": "stopping", "pid": os.getpid()}).encode() + b"\n"
            answer = Answer.of(body, "application/json", 202)
            answer.after = lambda: guard.begin_shutdown(stopper)
            return answer

        if core is None:
            server = serving_here()
            if server is not None:
                server.opening()  # before siblings can see this process listen
        group = Siblings(session) if core is None or core.siblings is None else core.siblings
        if stop_accepting is not None:  # set before siblings can ask for it
            group.on_stop_accepting = functools.partial(
                guard.stop_accepting_and_drain, stop_accepting=stop_accepting
            )
        group.on_deadline = guard.told_deadline
        guard.group = group
        guard.routes = Routes(
            [
                Route(shutdown_path, "POST", shutdown),
                *LiveControls(group, guard.in_flight, guard.wait_out).routes(control_prefix),
                *Dashboard(group).routes(control_prefix),
            ],
            token=settings.token,
            allow_remote=settings.allow_remote,
        )
        if core is None:
            guard._take_the_process(shutdown_path)
        else:
            guard.owns_process = False
        return guard

    def _take_the_process(self, shutdown_path: str) -> None:
        """What a door does to the process it serves: note the master, hear the siblings,
        stand in front of Ctrl-C, drain at exit, and say once that it measures."""
        remember_master(prefork_here())
        monitor_at_open()  # a reloader's worker: its monitor, while it is the parent for sure
        assert self.group is not None
        self.group.listen_if_prefork()
        on_interrupt(self.hurry)
        # Requests that arrived after the drain and before the server stopped:
        # let them finish before the process ends (a server's threads may be daemons).
        ending.on_exit_drain(functools.partial(self.drain, at_exit=True))
        self.announce(shutdown_path)

    def enter(self, request: Any, end: Callable[[], bool] | None = None) -> int:
        """Count ``request`` in flight; returns what :meth:`leave` needs back.

        ``end``, if given, ends the request cleanly when the drain runs out (an open
        websocket has no end of its own), and says whether it did; it is called from
        the stopping thread.
        """
        began = len(self.session.contexts)
        with self._lock:
            self._running[id(request)] = request
            if end is not None:
                self._enders[id(request)] = end
        return began

    def leave(self, request: Any, began: int) -> None:
        """``request`` is over; note it if the context changed while it ran."""
        with self._lock:
            self._running.pop(id(request), None)
            self._enders.pop(id(request), None)
            if self._waiting:
                self._left.notify_all()
        if began != len(self.session.contexts):
            self.session.note_overlap(self._name_of(request), began - 1)

    def in_flight(self) -> int:
        """How many requests the app is serving now."""
        return len(self._running)

    def wait_out(self, timeout: float) -> bool:
        """Wait until the requests in flight now have left, ``timeout`` seconds at most;
        whether they have. Those that arrive meanwhile are not waited for: on a busy
        server some request is always in flight."""
        with self._left:
            now = set(self._running)
            self._waiting += 1
            try:
                return self._left.wait_for(lambda: now.isdisjoint(self._running), timeout)
            finally:
                self._waiting -= 1

    @property
    def stopping(self) -> bool:
        """Whether a shutdown began in this process."""
        return self._stopping

    def announce(self, shutdown_path: str) -> None:
        """Say once per process that it measures, where the data goes, how to stop it."""
        session = self.session
        if session.announced:
            return
        session.announced = True
        say(
            f"measuring coverage (core {session.core}{_contexts_on(session)},"
            f" data {session.data_file}.*,"
            f" control POST {shutdown_path}, pid {os.getpid()})"
        )

    def begin_shutdown(self, stopper: Stopper) -> bool:
        """Drain, save and call ``stopper``, in a thread of its own; once.

        Returns False if a shutdown had already begun (nothing more is done).
        """
        with self._lock:
            if self._stopping:
                return False
            self._stopping = True
        self.stop_by(time.monotonic() + self.drain_timeout)
        start_thread(self._drain_save_stop, stopper, name="covguard-shutdown", daemon=False)
        return True

    def stop_by(self, deadline: float) -> None:
        """The stop must be over by ``deadline`` (``time.monotonic()``, one clock for every
        process of the machine); the first deadline set stands. Also what a sibling's stop
        tells this process (``{"op": "deadline"}``): then, at the deadline, what still
        runs here is ended too."""
        with self._lock:
            first = self._deadline is None
            self._stopping = True
            if first:
                self._deadline = deadline
        if first and self.owns_process:
            start_thread(self._end_at_the_latest, name="covguard-deadline")

    def hurry(self) -> bool:
        """Ctrl-C came (:mod:`.interrupts`): if this process drains, the deadline is now.

        Returns True if a drain was under way (or the stop had begun and was not yet
        in the server's hands): the interrupt is then the stop's, not the server's (the
        stopper's own SIGINT, after the drain, is the server's).
        Called from a signal handler: it only sets what the drains read.
        """
        if not self._drains and (not self._stopping or self._handed_over):
            return False
        self._interrupted = True
        self._deadline = min(self._deadline or time.monotonic(), time.monotonic())
        return True

    def told_deadline(self, deadline: float) -> None:
        """A sibling's stop began, and the server stops this process too: it must be over
        by ``deadline``; what still runs here then is ended (:meth:`drain`, in a thread)."""
        self.stop_by(deadline)
        start_thread(self.drain, name="covguard-drain")

    def _end_at_the_latest(self) -> None:
        """Half a second past the deadline, a process still running is ended, its data saved.

        By then the door has ended what it could, and the server's own stop had its
        time: what holds the process still is a handler inside the app (a thread
        cannot be stopped from outside), or a server waiting for something of its own,
        longer than the stop may last. Its clients see their connections closed. The
        server may ask for a last, bounded wait (a worker's master that must stop it
        first: ``ending_early()`` in :mod:`.servers`).
        """
        assert self._deadline is not None
        while (left := self._deadline + LAST_GRACE - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))  # the deadline may come sooner (:meth:`hurry`)
        with self._lock:
            held = [self._name_of(request) for request in self._running.values()]
        why = f", cutting {_listed(held)}" if held else ""
        say(
            f"this process had not ended {LAST_GRACE}s after drain_timeout={self.drain_timeout}s;"
            f" ending it now, its data saved{why}",
            logging.WARNING,
        )
        error = self.session.finish()
        server = serving_here()
        if server is not None:
            server.ending_early()
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(ExitCode.NOT_SAVED if error is not None else ExitCode.OK)

    def note_cut(self, request: Any, how: str = "its client sees the connection closed") -> None:
        """Say that ``request`` was ended at the deadline, and ``how`` (once each)."""
        with self._lock:
            if id(request) in self._named_cut:
                return
            self._named_cut.add(id(request))
        say(
            f"cut {self._name_of(request)}: still running at drain_timeout={self.drain_timeout}s"
            f" ({how})",
            logging.WARNING,
        )

    def _drain_save_stop(self, stopper: Stopper) -> None:
        if stopper.drains and self.group is not None:
            # The server drains every process itself (a master's graceful stop): each
            # is told the deadline, here and in the siblings, and saves at its exit.
            command = {"op": "deadline", "at": self._deadline}
            tell = functools.partial(self.group.broadcast, command, here=False)
            start_thread(tell, name="covguard-deadline-tell").join(2.0)
            start_thread(self.drain, name="covguard-drain")
        if not stopper.drains:  # else the server drains, and each process saves at exit
            settle = stopper.before_drain()
            siblings = None
            if (
                settle and self.group is not None
            ):  # they stop with the master: they stop accepting too
                command = {"op": "stop-accepting", "settle": settle}
                tell = functools.partial(self.group.broadcast, command, here=False)
                siblings = start_thread(tell, name="covguard-stop-accepting")
            self.drain()
            self.session.save()  # on disk before the stop; finish() at exit adds the rest
            if settle:  # and nothing arrived meanwhile, on a connection kept alive
                self.drain(settle=settle)
            if siblings is not None:
                siblings.join(timeout=max(0.0, (self._deadline or 0) - time.monotonic()))
        if self.group is not None:
            # A sibling still booting may not hear its master's stop (a forked worker may
            # keep its master's SIGTERM handler until it serves: ServerSupport.opening),
            # and its master then waits for ever. Wait for their doors to open, bounded.
            self.group.siblings(boot_timeout=30.0)
        self._handed_over = True
        stopper()

    def _wait(self, until: float, *, at_exit: bool, settle: float) -> None:
        """Until nothing has been in flight for ``settle`` seconds, or the stop's deadline
        (which an interrupt may bring forward; ``until`` where no stop set one)."""

        def busy() -> bool:
            return bool(self._running) or (at_exit and bool(handler_threads()))

        quiet_since = time.monotonic()
        while time.monotonic() < (self._deadline or until):
            if busy():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                break
            time.sleep(0.01)

    def stop_accepting_and_drain(self, settle: float, stop_accepting: Callable[[], object]) -> None:
        """A sibling's stop began, and this process stops with the master: answer as
        stopping (the ASGI door then asks clients to close), ``stop_accepting()``, and drain
        until no request has been in flight for ``settle`` seconds (all within
        ``drain_timeout``)."""
        self.stop_by(time.monotonic() + self.drain_timeout)
        stop_accepting()
        self.drain(settle=settle)

    def drain(self, *, at_exit: bool = False, settle: float = 0.0) -> None:
        """Wait for the requests in flight, until the stop's deadline; then end them.

        The stop has one ``drain_timeout`` in all, however many waits it has: a
        stalled client cannot hold it twice. At exit the server no longer accepts
        connections, and the wait is also for its handler threads that have one but
        have not reached us yet: the interpreter would cut their response short
        (see :func:`~.stopping.handler_threads`). ``settle``: until none has been in
        flight for so many seconds. Past the deadline, :attr:`ending` tells the doors
        to end their requests, and those that can be ended here are.
        """
        # With no stop asked (an exit, a master stopping its workers): one drain_timeout.
        until = time.monotonic() + self.drain_timeout
        with self._lock:
            self._drains += 1
        try:
            self._wait(until, at_exit=at_exit, settle=settle)
        finally:
            with self._lock:
                self._drains -= 1
        if self._interrupted and self._running:
            say("interrupted while draining: ending what still runs now", logging.WARNING)
            self._interrupted = False  # said once
        if not self._running:
            return
        self.ending = True  # a streamed WSGI body ends at its next chunk
        if at_exit:  # the process ends now, and what still runs with it
            for request in list(self._running.values()):
                self.note_cut(request)
            return
        with self._lock:
            enders = dict(self._enders)
        ended = {key for key, end in enders.items() if end()}
        ending = time.monotonic() + LAST_GRACE / 2  # the ended ones clean up, and leave
        while ended & self._running.keys() and time.monotonic() < ending:
            time.sleep(0.01)


_said_inert: list[bool] = []


def _say_inert() -> None:
    """Once per process: a door without a token measures nothing and serves no route, and
    ``covguard shutdown`` against it would only meet the app's own answer."""
    if not _said_inert:
        _said_inert.append(True)
        say(
            "no token (COVGUARD_TOKEN unset): measuring nothing, and the control routes"
            " (/__shutdown__, /__coverage__/...) are off; the app is served as it is"
        )


def _listed(names: list[str]) -> str:
    """``"GET /a, GET /b and 3 more"``: the first five names."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class Door:
    """What both doors share: their options, their guard, and the stop.

    :param app: the application to wrap.
    :param token: the control token (16 characters or more); defaults to
        ``COVGUARD_TOKEN``, then to the token given to :func:`~wsgi_covguard.start`.
        Without one the door is inert: a pure pass-through that starts nothing.
    :param shutdown_path: the path of the shutdown route, under any mount point.
    :param control_prefix: where the live control routes live
        (``<prefix>/save``, ``/reset``, ``/context``, ``/status``, ``/data``).
    :param allow_remote: accept control requests from outside loopback (default:
        ``COVGUARD_ALLOW_REMOTE=1``, else off: the token is the only other line of
        defence). The order of the settings is :mod:`.settings`'s.
    :param drain_timeout: seconds to wait, after a shutdown request, for the
        requests in flight to finish before saving and stopping.
    :param autosave: save every so many seconds in the background (also
        ``COVGUARD_AUTOSAVE``), so a process killed with SIGKILL loses at most
        that much. Off by default.
    """

    def __init__(
        self,
        app: Any,
        *,
        token: str | None = None,
        shutdown_path: str = SHUTDOWN_PATH,
        control_prefix: str = CONTROL_PREFIX,
        allow_remote: bool | None = None,
        drain_timeout: float = 10.0,
        autosave: float | None = None,
    ) -> None:
        self._build(app, None, token=token, shutdown_path=shutdown_path,
                    control_prefix=control_prefix, allow_remote=allow_remote,
                    drain_timeout=drain_timeout, autosave=autosave)  # fmt: skip

    @classmethod
    def in_process(
        cls,
        app: Any,
        *,
        session: CoverageSession,
        siblings: Siblings | None = None,
        stopper: Stopper | None = None,
        token: str | None = None,
        shutdown_path: str = SHUTDOWN_PATH,
        control_prefix: str = CONTROL_PREFIX,
        allow_remote: bool | None = None,
        drain_timeout: float = 10.0,
    ) -> Self:
        """The door alone, on the ``session`` given (for tests, through
        ``werkzeug.test.Client`` or an ASGI harness): ``siblings`` hear its commands
        (default: this process alone), ``stopper`` is what a shutdown calls (default: the
        server's, found from the request). The process is left alone: no signal handler,
        no exit step, no control socket, no line said, no server hook."""
        door = cls.__new__(cls)
        door._build(app, Core(session, siblings, stopper), token=token,
                    shutdown_path=shutdown_path, control_prefix=control_prefix,
                    allow_remote=allow_remote, drain_timeout=drain_timeout,
                    autosave=None)  # fmt: skip
        return door

    def _build(self, app: Any, core: Core | None, **options: Any) -> None:
        """The door on ``app``, its ``options`` those of :meth:`Guard.open` (``core``:
        built in-process, see :meth:`in_process`)."""
        self.app = app
        self.shutdown_path: str = options["shutdown_path"]
        self.drain_timeout: float = options["drain_timeout"]
        # None when inert (no token): everything goes straight to the app.
        self._guard = Guard.open(
            **options,
            name_of=self._name_of,
            stopper_of=self._stopper_of,
            stop_accepting=self._stop_accepting,
            core=core,
        )
        self.allow_remote = self._guard.routes.allow_remote if self._guard else False
        if self._guard is None:
            self._inert()
        elif core is None:
            self._opened(self._guard)

    #: How this process stops accepting connections when a sibling's stop asks it to
    #: (:meth:`Guard.stop_accepting_and_drain`); None: it is not asked (WSGI servers stop
    #: alone).
    _stop_accepting: Callable[[], object] | None = None

    def _opened(self, guard: Guard) -> None:
        """Called once the door measures (it has a token): what its servers need then."""

    def _inert(self) -> None:
        """Called once when the door is inert (no token): it may step aside."""

    @staticmethod
    def _name_of(request: Any) -> str:
        """How the door names one of its requests in messages (``"GET /path"``)."""
        raise NotImplementedError

    @staticmethod
    def _stopper_of(request: ControlRequest) -> Stopper:
        """How to stop the server serving the shutdown ``request``."""
        raise NotImplementedError

    @property
    def enabled(self) -> bool:
        """False for an inert door (no token)."""
        return self._guard is not None

    def begin_shutdown(self, stopper: Stopper) -> bool:
        """Drain, save and call ``stopper``, in a thread of its own; once.

        The shutdown route calls it with the stopper of the server it runs
        under; ``covguard serve`` also calls it on SIGTERM. Returns False if the
        door is inert, or a shutdown had already begun (nothing more is done).
        """
        return self._guard is not None and self._guard.begin_shutdown(stopper)


def _contexts_on(session: CoverageSession) -> str:
    """ ", contexts on" where they were asked for at the start and are recorded."""
    return ", contexts on" if session.contexts_asked and session.supports_contexts else ""
