"""The coverage session: measuring in this process, from start-up to the last save.

``coverage run`` starts measuring before anything is imported and saves at exit.
A WSGI entry point can do the same in-process: :func:`~.startup.start` at its top
starts coverage.py (or adopts the one already running, e.g. under ``coverage run``
or pytest-cov) before the application is imported, so import-time lines (module
level ``def``, decorators, assignments) count; this module is the session it makes.

What to measure is coverage.py's own configuration (``.coveragerc``,
``pyproject.toml``, ``COVERAGE_RCFILE``, ``COVERAGE_FILE``...), read by coverage
itself. We only add three things coverage's API leaves to its caller:

- data is written parallel-style (``data_suffix=True``, as ``coverage run -p``),
  so every process, and every worker of a pre-fork server, has its own file
  that ``coverage combine`` and pytest-cov find;
- :meth:`CoverageSession.finish` stops and saves once per process, however many
  of the shutdown route, ``atexit``, SIGTERM, SIGINT and SIGHUP get there, and
  however close together (a signal that arrives during that save waits for it);
  a process whose last save failed says so once and exits with status 74;
- on Python 3.12+ the ``sysmon`` core is chosen when the configuration allows
  it, since it costs next to nothing where ``ctrace`` halves the throughput
  (:func:`~.startup.choose_core`).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import shutil
import sqlite3
import sys
import threading
from types import FrameType
from typing import Any

import coverage

from . import covcompat, ending, entrypoint
from .auth import Token
from .errors import ExitCode, SaveError
from .log import say
from .templates import TemplateLog
from .threads import start_thread

__all__ = ["CoverageSession"]

_CORE_NAMES = {"CTracer": "ctrace", "PyTracer": "pytrace", "SysMonitor": "sysmon"}

#: The settings a report of this process's data must share with it: what it measures
#: (source, include, omit, [paths]) and how it reports (exclusions, partial branches,
#: precision, sorting...). Everything else about reading data is the data's own.
_REPORT_SECTIONS = ("report:", "html:", "json:")
_REPORT_RUN_OPTIONS = ("run:source", "run:source_pkgs", "run:source_dirs", "run:include",
                       "run:omit", "run:relative_files", "run:plugins")  # fmt: skip

#: How many requests that overlapped a context switch are named in full.
MAX_OVERLAPS_SHOWN = 20
#: The least free space a save needs (see CoverageSession._short_of_room).
MIN_FREE_BYTES = 1 << 20


class CoverageSession:
    """One process's coverage measurement: save, finish, and what to say about it.

    :param cov: the running :class:`coverage.Coverage`.
    :param owned: True if we started it, so we also stop it; an adopted one
        (``coverage run``, pytest-cov) is stopped by its owner.
    :param token: the token :func:`start` was given, for a :class:`CovGuard`
        built without one.
    """

    def __init__(self, cov: coverage.Coverage, *, owned: bool, token: Token | None) -> None:
        self.coverage = cov
        self.owned = owned
        self.token = token
        self.announced = False
        #: True if dynamic contexts were asked for at the start (``contexts=True``).
        self.contexts_asked = False
        #: The dynamic context set through :meth:`switch_context`, if any.
        self.context: str | None = None
        #: Every context set so far, in order: a request notes the index it began under.
        self.contexts: list[str | None] = [None]
        #: Requests in flight across a context switch (see note_overlap), the first few.
        self.overlaps: list[dict[str, str | None]] = []
        self.overlap_count = 0
        #: The templates loaded under each context, with contexts asked (:meth:`note_templates`).
        self.templates: TemplateLog | None = None
        # RLock: the SIGTERM net can run finish() in the main thread while it
        # is already inside finish().
        self._lock = threading.RLock()
        self._finished_pid: int | None = None
        self._finished = threading.Event()
        #: Why this process's last save (:meth:`finish`) failed, if it did.
        self.unsaved: str | None = None
        self._said_a_failure = False  # the first failed save is said; the rest at the end
        self._autosave_every: float | None = None
        #: Conditions that keep data from being measured as configured.
        self.warnings: list[str] = []
        #: True where threads must be handed coverage's tracer (see trace_this_thread).
        self.traces_threads = owned and self.core != "sysmon"
        # What start-up measured, for reset(to_start=True): (arcs?, lines or arcs per file).
        self._start_up: tuple[bool, dict[str, Any]] | None = None
        covcompat.remember_file_names(cov)
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # A fork while another thread held the lock would leave it held forever.
        self._lock = threading.RLock()
        self._finished = threading.Event()
        if self._autosave_every is not None:  # threads do not survive a fork
            self.autosave(self._autosave_every)

    def autosave(self, every: float) -> None:
        """Save every ``every`` seconds in a background thread, until finished."""
        self._autosave_every = every

        def loop() -> None:
            while not self._finished.wait(every):
                self.save()

        start_thread(loop, name="covguard-autosave")

    def warn_untraced_threads(self) -> None:
        """Say once if threads already running will not be measured (ctrace)."""
        here = threading.current_thread()
        running = [thread.name for thread in threading.enumerate() if thread is not here]
        if self.owned and running and self.core != "sysmon":
            self.warnings.append(
                f"{len(running)} thread(s) were running before coverage started"
                f" ({', '.join(running)}); the {self.core}"
                " core does not measure them: start coverage first (the top of the entry"
                " point), or use Python 3.12+ for the sysmon core"
            )
            say(self.warnings[-1], logging.WARNING)

    def measure_importing(self, frame: FrameType | None) -> None:
        """Measure the module bodies being imported on ``frame``'s stack, which started
        before coverage did and which no tracer will follow (see :mod:`.entrypoint`).

        Their lines go where a tracer puts what it records, under the context of the
        moment, so that every save, copy and reset treats them as traced lines. What
        coverage.py would not measure (``source``, ``include``, ``omit``) stays out.
        """
        arcs = bool(self.coverage.get_option("run:branch"))
        for module in entrypoint.importing(frame):
            name = covcompat.traced_name(self.coverage, module)
            if name is None:
                continue
            events = entrypoint.lines_run(module.f_code, module.f_lasti)
            if not isinstance(events, str):
                measured = entrypoint.arcs_of(module.f_code, events) if arcs else None
                if covcompat.add_pending(self.coverage, name, events, measured):
                    continue
                events = f"coverage.py {coverage.__version__} stores arcs in a way unknown here"
            self.warnings.append(
                f"{module.f_code.co_filename}: its module-level lines ran before coverage"
                f" started (the server imports it) and are not measured: {events}; keep the"
                " entry point to start(), imports and the wrap, or start the server with"
                " `covguard serve`"
            )
            say(self.warnings[-1], logging.WARNING)

    def trace_this_thread(self) -> None:
        """Measure the calling thread from its next call on, if the tracer has not reached it.

        ctrace and pytrace reach the main thread and threads that ``threading``
        starts after :meth:`coverage.Coverage.start`. A server that runs the
        application on threads of its own making (a Rust runtime, an embedding C
        program, threads started before coverage) would have none of their lines measured.
        The middleware calls this when ``sys.gettrace()`` is None in a request's
        thread; coverage's own per-thread installer (what ``threading.settrace``
        hands new threads) then starts a tracer there. It is a private part of
        coverage.py: if it is ever missing, the loss is said in one line, and in
        ``status``, at the first such request.
        """
        if self.finished or covcompat.is_paused(self.coverage):
            return  # paused by its owner: not ours to resume
        install = covcompat.thread_installer(self.coverage)
        if install is not None:
            sys.settrace(install)
            return
        with self._lock:
            if not self.traces_threads:
                return  # said already
            self.traces_threads = False
            self.warnings.append(
                f"requests run on threads the {self.core} core does not trace (thread"
                f" {threading.current_thread().name!r}); their lines are not measured: use"
                " Python 3.12+ for the sysmon core, or a server that runs the app on"
                " threads started by `threading`"
            )
        say(self.warnings[-1], logging.WARNING)

    @functools.cached_property
    def core(self) -> str:
        """The measuring core in use: ``sysmon``, ``ctrace`` or ``pytrace``."""
        info = dict(self.coverage.sys_info())
        return _CORE_NAMES.get(str(info.get("core")), str(info.get("core")))

    @property
    def supports_contexts(self) -> bool:
        """Whether dynamic contexts are recorded: on every core, sysmon with
        :func:`.covcompat.switch_context` where this coverage.py allows it."""
        return self.why_no_contexts is None

    @property
    def why_no_contexts(self) -> str | None:
        """Why this process cannot record dynamic contexts, if it cannot."""
        if self.core != "sysmon":
            return None
        return covcompat.sysmon_contexts(self.coverage)

    @property
    def current_file(self) -> str:
        """This process's data file as named now (the name changes with each save)."""
        return self.coverage.get_data().data_filename()

    @property
    def data_file(self) -> str:
        """The configured data file; ours are ``<data_file>.<suffix>`` beside it."""
        return os.path.abspath(str(self.coverage.get_option("run:data_file")))

    def reporter(self, data_file: str | None) -> coverage.Coverage:
        """A :class:`coverage.Coverage` that reports ``data_file`` as this session's would.

        The numbers it gives equal ``coverage report``'s run with the same configuration:
        it has the live session's report settings, whether they came from a file, the
        environment or :func:`start`'s arguments. With ``data_file=None`` its data is
        in memory, empty until filled through ``get_data()``.
        """
        live = self.coverage
        cov = coverage.Coverage(data_file=data_file, config_file=False)
        names = [
            name
            for name in covcompat.option_names(live)
            if name.startswith(_REPORT_SECTIONS) or name in _REPORT_RUN_OPTIONS
        ]
        for name in [*names, "paths"]:
            cov.set_option(name, live.get_option(name))
        cov.load()
        return cov

    @property
    def finished(self) -> bool:
        """True once this process has stopped measuring and saved for good."""
        return self._finished_pid == os.getpid()

    def save(self) -> str | None:
        """Write what was measured so far; measuring goes on. Returns the error, if any.

        The first error is said in the log; the later ones only to the caller (a control
        route answers 507 with it), until :meth:`finish` says whether the last save failed
        too: a full disk under an autosave every second is one line, not thousands.
        The file name changes with each save that adds data (coverage puts a
        hash of the data in it), so nobody should keep the name.
        """
        with self._lock:
            error = self._save()
            if error is not None and not self._said_a_failure:
                self._said_a_failure = True
                say(f"{error} (said once; the end of the process says if data was lost)",
                    logging.WARNING)  # fmt: skip
            return error

    def finish(self) -> str | None:
        """Stop measuring (if we started it) and save: once per process. Returns why the
        save failed, if it did (:attr:`unsaved`), said once in the log.

        Everything that ends the process calls it, signal handlers too: a signal that
        arrives meanwhile waits for the save (:func:`.ending.saving`). Two SIGTERMs 5 ms
        apart killed the process in the middle of this write, and a data file of 0
        bytes was all that was left.
        """
        with ending.saving(), self._lock:
            if self._finished_pid == os.getpid():
                return self.unsaved
            self._finished_pid = os.getpid()
            self._finished.set()
            if self.owned:
                covcompat.disarm(self.coverage)
                self.coverage.stop()
            error = self._save()
            if error is None:
                say(f"saved {_measured(self.current_file)} (pid {os.getpid()})")
            if error is not None:
                self.unsaved = error
                free = free_bytes(os.path.dirname(self.data_file))
                say(
                    f"{error}; this process's data since its last save is lost"
                    f" ({free} bytes free in {os.path.dirname(self.data_file)!r}),"
                    f" so it exits with status {int(ExitCode.NOT_SAVED)}",
                    logging.ERROR,
                )
            return error

    def remember_start_up(self) -> None:
        """Keep a copy of what was measured so far: the state a reset ``to_start`` returns to.

        The middleware calls it once the application is imported, so the copy holds
        its import-time lines (``def``, decorators, module code), which a phase's report
        would otherwise show as not run. Taking it writes nothing to disk.
        """
        with self._lock:
            if self._start_up is None:
                data = covcompat.copy_measured(self.coverage, self.context)
                # Plain sets, not in-memory SQLite: they survive a fork (a preloading master).
                read = data.arcs if data.has_arcs() else data.lines
                measured = {name: read(name) or [] for name in data.measured_files()}
                self._start_up = (data.has_arcs(), measured)
                data.close(force=True)

    def fingerprint(self) -> list[Any]:
        """A value that changes whenever this process's data does, cheap to take.

        Measured lines only ever add to the tracer's pending sets, until a save moves
        them to the data file: the file's size and time, the pending sets' sizes and
        the context together change with every new line, save, reset or switch.
        """
        written = covcompat.written_file(self.coverage)
        try:
            info = os.stat(written) if written is not None else None
        except OSError:
            info = None
        pending = covcompat.pending_points(self.coverage)
        on_disk = (info.st_size, info.st_mtime_ns) if info is not None else None
        return [os.getpid(), on_disk, pending, self.context]

    def dump(self) -> bytes:
        """Everything measured so far, serialized (:meth:`coverage.CoverageData.dumps`),
        without writing the data file: what a reader of the data gets."""
        with self._lock:
            memory = covcompat.copy_measured(self.coverage, self.context)
        try:
            return memory.dumps()
        finally:
            memory.close(force=True)  # coverage keeps an in-memory database open otherwise

    @property
    def remembers_start_up(self) -> bool:
        """True once :meth:`remember_start_up` ran: a reset to start-up is possible."""
        return self._start_up is not None

    def reset(self, *, to_start: bool = False) -> None:
        """Forget what was measured so far, in memory and on disk; measuring goes on.

        With ``to_start``, what start-up measured stays (see :meth:`remember_start_up`).
        The collector keeps running (restarting it would stop tracing the
        server's existing threads under ctrace): its pending lines are flushed
        into the data and the data erased with its file. sysmon disables each
        line's event after its first hit; those events are re-armed.
        """
        with self._lock:
            short = self._short_of_room()
            if short is not None:
                raise SaveError(short)
            data = self.coverage.get_data()
            _erase(data)
            if self.templates is not None:
                self.templates.forget(keep_start_up=to_start)
            if to_start and self._start_up is not None:
                arcs, measured = self._start_up
                try:
                    (data.add_arcs if arcs else data.add_lines)(measured)
                except (OSError, sqlite3.Error, coverage.CoverageException) as exc:
                    # coverage writes without a journal: what the failed write left is no
                    # data file, and every later save would fail on it. Gone, it is not.
                    _erase(data)
                    raise SaveError(
                        f"could not write the start-up state beside {self.data_file!r}: {exc};"
                        " the data is empty now: free some space there and reset again"
                    ) from None
            monitoring = getattr(sys, "monitoring", None)  # Python 3.12+
            if monitoring is not None and self.core == "sysmon":
                monitoring.restart_events()
            if self.context is not None:  # erasing forgot it too
                covcompat.switch_context(self.coverage, self.context)

    def switch_context(self, context: str) -> None:
        """Record the lines run from now on under ``context`` (process-wide).

        Switching writes the pending lines first, so it needs room on disk too.
        """
        with self._lock:
            short = self._short_of_room()
            if short is not None:
                raise SaveError(short)
            covcompat.switch_context(self.coverage, context)
            self.context = context
            self.contexts.append(context)

    def take_context(self, context: str) -> None:
        """Switch to ``context`` unless a context was set meanwhile (a sibling's, taken
        late: a switch that reached this process since is newer)."""
        with self._lock:
            if self.context is None:
                self.switch_context(context)

    def note_templates(self) -> None:
        """Note under each context the templates its requests load (Jinja2, Django), for
        the impact map: a changed template then runs the tests that rendered it."""
        self.templates = TemplateLog(lambda: self.context)
        self.templates.install()

    def note_overlap(self, request: str, began: int) -> None:
        """Say that ``request``, begun under context number ``began``, ended under another.

        Contexts are process-wide: the lines such a request ran after the switch are
        recorded under the new context, not the one of the test that sent it. That
        cannot be undone, so it is said: in ``status``, ``summary`` and the pytest
        plugin's terminal summary.
        """
        with self._lock:
            self.overlap_count += 1
            if len(self.overlaps) < MAX_OVERLAPS_SHOWN:
                self.overlaps.append(
                    {"request": request, "began": self.contexts[began], "ended": self.context}
                )

    def discard(self) -> None:
        """Stop without saving: start-up failed, there is nothing worth keeping."""
        with self._lock:
            self._finished_pid = os.getpid()
            if self.owned:
                covcompat.disarm(self.coverage)
                self.coverage.stop()

    def _save(self) -> str | None:
        error = self._short_of_room()
        if error is None:
            if self.templates is not None and len(self.contexts) > 1:
                # First: a data file is never newer than its process's note of templates.
                self.templates.write(os.path.dirname(self.data_file), self.contexts)
            try:
                self.coverage.save()
            except (OSError, sqlite3.Error, coverage.CoverageException) as exc:
                error = f"could not save coverage data beside {self.data_file!r}: {exc}"
        return error

    def _short_of_room(self) -> str | None:
        """Why writing now could ruin the data file, if it could.

        coverage.py writes its SQLite file in place, without a journal: a disk
        that fills up in the middle of a write leaves it malformed, and with it
        everything saved before. So writes wait for room enough to double the
        file, and at least MIN_FREE_BYTES.
        """
        folder = os.path.dirname(self.data_file)
        # This process's file, found without flushing (a flush is a write).
        mine = glob.glob(f"{glob.escape(self.data_file)}.*.pid{os.getpid()}.*")
        current = max((os.path.getsize(path) for path in mine if os.path.isfile(path)), default=0)
        needed = max(MIN_FREE_BYTES, current)
        free = free_bytes(folder)
        if free >= needed:
            return None
        return (
            f"could not save coverage data beside {self.data_file!r}: {free} bytes free,"
            f" {needed} needed to write safely; free some space there"
        )


def _measured(data_file: str | None) -> str:
    """``"12 lines of 3 files to .coverage.host.1.X"``: what a data file holds, read with
    SQL from coverage.py's schema (its own API asks once per file: 1.5 s at 3,000 files,
    too long for a process on its way out); its name alone if it cannot be read so."""
    if data_file is None or not os.path.exists(data_file):
        return "no coverage data (nothing measured)"
    name = os.path.basename(data_file)
    held = covcompat.lines_in_file(data_file)
    if held is None:
        return f"coverage data to {name}"
    return f"{held[0]} lines of {held[1]} files to {name}"


def free_bytes(folder: str) -> int:
    """The bytes free in ``folder``'s file system (0 if it cannot be told: it is gone)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _erase(data: coverage.CoverageData) -> None:
    """``data.erase()``, and then a data file that can be written again as it was.

    coverage.py 7.17's ``erase()`` deletes the file but keeps its memory of whether
    the data holds lines or arcs, so the next file is written without saying it
    holds arcs, and reads back as line data with no lines: after a reset, branch
    measurement saved nothing. Forgetting that memory too makes the next write
    say it again.
    """
    data.erase()
    covcompat.forget_kind(data)


def __getattr__(name: str) -> Any:
    """``start`` and ``get_session``, which moved to :mod:`.startup`, still found here."""
    if name in ("start", "get_session"):
        from . import startup

        return getattr(startup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
