"""Every use of coverage.py's private parts, in one place, checked against the installed one.

coverage.py's public API starts, saves, reads and reports; a live server needs more than
it offers, and each need is met here and nowhere else:

- **reading the live data without a save** (status, summaries, the dashboard, the
  start-up state a reset returns to): the collector's pending lines, flushed into a copy
  under the context they ran in, then handed back (``Coverage._collector``, ``_data``,
  ``_inorout``; ``Collector.data``, ``use_data``, ``flush_data``);
- **a data file written again after a reset** as it was (``CoverageData._has_lines``);
- **threads the tracer never reached** (``Collector._installation_trace``);
- **the entry point's lines** (:mod:`.entrypoint`): put where the tracer puts its own
  (``InOrOut.should_trace``; ctrace's packed arcs);
- **reports cheap enough to repeat** (:mod:`.reporting`, :mod:`.parsing`): kept file
  reporters and file names, parsers made elsewhere, the HTML pages' writer, and
  ``coverage.report_core``, ``coverage.results``, ``coverage.files``, ``coverage.parser``,
  ``coverage.python``, modules its documentation does not list;
- **how many lines a data file holds**, read from its SQLite schema in one query;
- **dynamic contexts under the sysmon core** (:func:`switch_context`, :func:`disarm`):
  coverage.py's own switch, then every event re-armed; its tracers' tool id and code
  objects (``Collector.tracers``, ``SysMonitor.myid``, ``code_objects``), and whether
  its core already does it (``Coverage._core.supports_dynamic_contexts``).

coverage.py says of its underscore names that they "might stop working at any point".
:func:`check` looks for each one at start-up: a missing part without which the data
would be wrong refuses the start in one line naming the coverage.py version and the
part; a part that only makes something fast or adds a measurement is said in one line,
and that feature does without it. ``pyproject.toml`` allows the coverage.py versions
``make test`` runs against (the oldest and the newest), and ``tests/test_covcompat.py``
pins what each part is expected to do.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import coverage
import coverage.html

# coverage.py's modules its documentation does not list, named here for the rest of us.
from coverage.files import GlobMatcher as GlobMatcher
from coverage.files import prep_patterns as prep_patterns
from coverage.parser import PythonParser as PythonParser
from coverage.python import PythonFileReporter as PythonFileReporter
from coverage.report_core import get_analysis_to_report as get_analysis_to_report
from coverage.results import Numbers as Numbers

from .errors import ConfigError

__all__ = [
    "SUPPORTED",
    "add_pending",
    "check",
    "copy_measured",
    "disarm",
    "drop_syntax_tree",
    "exclusion_regex",
    "forget_kind",
    "give_parser",
    "lean_html_writes",
    "lines_in_file",
    "option_names",
    "pending_points",
    "remember_file_names",
    "reporting_doors",
    "switch_context",
    "sysmon_contexts",
    "thread_installer",
    "traced_name",
    "use_reporting_doors",
    "written_file",
]

#: The coverage.py versions ``pyproject.toml`` allows and ``make test`` runs against.
SUPPORTED = ">=7.17,<7.19"

#: Needed for the data to be right: without one of these, nothing starts.
_NEEDED = {
    "Coverage._collector": "reading the live data without a save",
    "Coverage._data": "reading the live data without a save",
    "Coverage._inorout": "listing the files that never ran, as a save does",
    "Collector.data": "reading the live data without a save",
    "Collector.use_data": "reading the live data without a save",
    "Collector.flush_data": "reading the live data without a save",
    "Collector.covdata": "reading the live data without a save",
    "Collector.static_context": "reading the live data without a save",
    "Collector.tracer_name": "knowing which core measures (ctrace or sysmon)",
    "InOrOut.find_possibly_unexecuted_files": "listing the files that never ran",
    "CoverageData._has_lines": "writing the data again after a reset",
}
#: What does without it, said in one line.
_OPTIONAL = {
    "Collector._installation_trace": "measuring threads the tracer never reached",
    "InOrOut.should_trace": "measuring the entry point a server imports",
    "Collector.core.packed_arcs": "measuring the entry point a server imports, with arcs",
    "Coverage._file_mapper": "naming files once, not at every save",
    "SysMonitor.myid and code_objects": "dynamic contexts under the sysmon core",
}


def check(cov: coverage.Coverage) -> list[str]:
    """Look for every private part used, on the started ``cov``; what is missing.

    Raises :class:`ConfigError` for a part the data needs; returns one line for each
    optional part missing, naming what does without it.
    """
    found = _parts(cov)
    version = coverage.__version__
    for part, need in _NEEDED.items():
        if not found.get(part):
            raise ConfigError(
                f"coverage.py {version} has no {part}, which wsgi_covguard needs for {need};"
                f" install coverage{SUPPORTED} (the versions it is tested with)"
            )
    return [
        f"coverage.py {version} has no {part}: no {what} (tested: coverage{SUPPORTED})"
        for part, what in _OPTIONAL.items()
        if not found.get(part) and _used(part, cov)
    ]


def _used(part: str, cov: coverage.Coverage) -> bool:
    """Whether ``cov``'s core uses ``part``: the tracer's installation is ctrace's, the
    sysmon contexts sysmon's (and not where coverage.py records them itself)."""
    if part == "Collector._installation_trace":
        return not _sysmon(cov)
    if part == "SysMonitor.myid and code_objects":
        return _sysmon(cov) and not _sysmon_records_contexts(cov)
    return True


def _parts(cov: coverage.Coverage) -> dict[str, bool]:
    live: Any = cov
    collector = getattr(live, "_collector", None)
    inorout = getattr(live, "_inorout", None)
    data = coverage.CoverageData(no_disk=True)
    try:
        has_lines = hasattr(data, "_has_lines") and hasattr(data, "_has_arcs")
    finally:
        data.close(force=True)
    core = getattr(collector, "core", None)
    return {
        "Coverage._collector": collector is not None,
        "Coverage._data": hasattr(live, "_data"),
        "Coverage._inorout": inorout is not None,
        "Coverage._file_mapper": callable(getattr(live, "_file_mapper", None)),
        "Collector.data": isinstance(getattr(collector, "data", None), dict),
        "Collector.use_data": callable(getattr(collector, "use_data", None)),
        "Collector.flush_data": callable(getattr(collector, "flush_data", None)),
        "Collector.covdata": hasattr(collector, "covdata"),
        "Collector.tracer_name": callable(getattr(collector, "tracer_name", None)),
        "Collector.static_context": hasattr(collector, "static_context"),
        "Collector._installation_trace": callable(getattr(collector, "_installation_trace", None)),
        "Collector.core.packed_arcs": isinstance(getattr(core, "packed_arcs", None), bool),
        "InOrOut.find_possibly_unexecuted_files": callable(
            getattr(inorout, "find_possibly_unexecuted_files", None)
        ),
        "InOrOut.should_trace": callable(getattr(inorout, "should_trace", None)),
        "CoverageData._has_lines": has_lines,
        "SysMonitor.myid and code_objects": _sysmon_parts(collector),
    }


def _sysmon_parts(collector: Any) -> bool:
    tracers = getattr(collector, "tracers", None)
    return isinstance(tracers, list) and all(
        isinstance(getattr(tracer, "myid", None), int)
        and isinstance(getattr(tracer, "code_objects", None), list)
        for tracer in tracers
    )


def _sysmon(cov: coverage.Coverage) -> bool:
    # What cov.sys_info() says as "core", without the rest of sys_info(): that globs
    # the interpreter's folders, 0.9 ms, and a context switch asks this every time.
    collector: Any = getattr(cov, "_collector", None)
    tracer_name = getattr(collector, "tracer_name", None)
    return callable(tracer_name) and tracer_name() == "SysMonitor"


# -- dynamic contexts under sysmon ---------------------------------------------------

#: The first coverage.py whose flush takes a snapshot of the pending lines and removes only
#: those (``Collector.flush_data``). Before, it wrote them, then cleared the sets: a line
#: first run by another thread during a switch's write was lost, and never reported again.
SYSMON_CONTEXTS_FROM = (7, 18)


def sysmon_contexts(cov: coverage.Coverage | None = None) -> str | None:
    """Why dynamic contexts cannot be recorded under sysmon here (by this coverage.py, or
    by the started ``cov``, whatever its core); None if they can."""
    if coverage.version_info[:2] < SYSMON_CONTEXTS_FROM:
        first = ".".join(map(str, SYSMON_CONTEXTS_FROM))
        return (
            f"coverage.py {coverage.__version__} loses lines at a context switch under"
            f" sysmon (install coverage>={first})"
        )
    ours = cov is not None and _sysmon(cov) and not _sysmon_records_contexts(cov)
    if ours and not _sysmon_parts(getattr(cov, "_collector", None)):
        return f"coverage.py {coverage.__version__} has no SysMonitor.myid or code_objects"
    return None


def switch_context(cov: coverage.Coverage, context: str) -> None:
    """``cov.switch_context(context)``, and under sysmon every event re-armed.

    coverage.py's switch writes the pending lines under the old context, on every core.
    But sysmon's line callback disables its event once it has reported: a line would be
    recorded under the first context that ran it, and never again. Re-armed
    (``sys.monitoring.restart_events()``), each line reports once more, under the new
    context: per-context lines equal ctrace's (tests/test_sysmon_contexts.py), at 0.3 to
    1 ms a switch. ``restart_events`` is the interpreter's: a debugger or profiler sees
    its own disabled events once more too.
    """
    cov.switch_context(context)
    if _sysmon(cov) and not _sysmon_records_contexts(cov):
        _monitoring().restart_events()


def disarm(cov: coverage.Coverage) -> None:
    """Before ``cov.stop()`` under sysmon: each code object's line events off.

    ``stop()`` frees the tool id, but on Python 3.12 and 3.13 the events set on each
    code object stay armed: re-armed by the switches, lines run after the stop (a
    server's own shutdown, 47 of waitress's) were added to the last context at the next
    save."""
    if not _sysmon(cov):
        return
    monitoring = _monitoring()
    collector: Any = getattr(cov, "_collector", None)
    for tracer in getattr(collector, "tracers", []):
        tool, codes = getattr(tracer, "myid", None), getattr(tracer, "code_objects", [])
        if not isinstance(tool, int) or monitoring.get_tool(tool) is None:
            continue
        for code in list(codes):
            with contextlib.suppress(ValueError):
                monitoring.set_local_events(tool, code, 0)


def _monitoring() -> Any:
    """``sys.monitoring``: Python 3.12+, where the sysmon core is."""
    return getattr(sys, "monitoring")  # noqa: B009 (unknown to mypy for 3.11)


def _sysmon_records_contexts(cov: coverage.Coverage) -> bool:
    """True once coverage.py's sysmon core records dynamic contexts itself: then ours
    steps aside."""
    core = getattr(cov, "_core", None)
    return bool(getattr(core, "supports_dynamic_contexts", False))


# -- the live data ------------------------------------------------------------------


def written_file(cov: coverage.Coverage) -> str | None:
    """The data file ``cov`` last wrote or will write, without making one."""
    written: Any = getattr(cov, "_data", None)
    return written.data_filename() if written is not None else None


def pending_points(cov: coverage.Coverage) -> int:
    """How many lines or arcs the tracers hold that no save has written yet."""
    collector: Any = getattr(cov, "_collector", None)
    if collector is None:
        return 0
    return sum(len(found) for found in list(collector.data.values()))


def is_paused(cov: coverage.Coverage) -> bool:
    """True if ``cov`` was started and then stopped by its owner."""
    live: Any = cov
    return live._collector is not None and not getattr(live, "_started", True)


def copy_measured(cov: coverage.Coverage, context: str | None) -> coverage.CoverageData:
    """Everything ``cov`` measured so far, in memory; its data file stays as it is.

    coverage.py writes pending lines only when it flushes, and to its data file: a
    copy taken by a reader (a GET, start-up) must not write that file, nor create it
    when nobody asked for a save. So the file, if any, is read as it is; the
    collector flushes its pending lines into the copy, under ``context`` (the dynamic
    context they run in), then gets them back for the next real save.
    """
    memory = coverage.CoverageData(no_disk=True)
    live: Any = cov
    written = live._data
    if written is not None and os.path.exists(written.data_filename()):
        part = coverage.CoverageData(basename=written.data_filename())
        try:
            part.read()
            memory.update(part)
        finally:
            part.close(force=True)
    collector = live._collector
    if collector is None:  # never started
        return memory
    kept, static = collector.covdata, collector.static_context
    # Collector.switch_context's own rule for the context lines are recorded under.
    recorded = f"{static}|{context}" if static and context else static or context
    pending = {name: set(found) for name, found in list(collector.data.items())}
    collector.use_data(memory, recorded)
    try:
        collector.flush_data()
    finally:
        collector.use_data(kept, static)
        kept.set_context(recorded)
        for name, found in pending.items():
            collector.data.setdefault(name, set()).update(found)
    # What a save adds (Coverage._post_save_work): every source file that could have run
    # and did not, so that reports show it at 0% as `coverage report` does.
    if live._inorout is not None and (memory.has_arcs() or memory.measured_files()):
        by_plugin: dict[str | None, list[str]] = {}
        for path, plugin in live._inorout.find_possibly_unexecuted_files():
            by_plugin.setdefault(plugin, []).append(live._file_mapper(path))
        for plugin, paths in by_plugin.items():
            memory.touch_files(paths, plugin)
    return memory


def forget_kind(data: coverage.CoverageData) -> None:
    """Have ``data``, just erased, write its next file as a new one: saying again
    whether it holds lines or arcs (coverage.py's ``erase()`` keeps that memory, and
    its next file then read back as line data with no lines)."""
    erased: Any = data
    erased._has_lines = erased._has_arcs = False


def thread_installer(cov: coverage.Coverage) -> Callable[..., Any] | None:
    """What ``threading.settrace`` hands new threads: set as the calling thread's trace
    function, it starts a tracer there. None where the core has none (sysmon)."""
    return getattr(getattr(cov, "_collector", None), "_installation_trace", None)


def remember_file_names(cov: coverage.Coverage) -> None:
    """Have ``cov`` work out each file's name for its data once, not at every save.

    A save (and a reader's copy) lists every source file that could have run and
    names each the way the data does: without ``relative_files``, its real path, a
    ``realpath`` per file. At 885 files that was most of a copy's time, for names that
    do not change while the server runs.
    """
    live: Any = cov
    name = getattr(live, "_file_mapper", None)
    if name is None or hasattr(name, "cache_info"):
        return
    remembered = functools.lru_cache(maxsize=65536)(name)
    live._file_mapper = remembered
    collector = live._collector  # names the files of each flush the same way
    if collector is not None and collector.file_mapper is name:
        collector.file_mapper = remembered


def option_names(cov: coverage.Coverage) -> list[str]:
    """Every option ``cov.get_option`` knows, as ``"section:name"`` (those of its
    configuration files; ``paths`` aside)."""
    return [option[1] for option in cov.config.CONFIG_FILE_OPTIONS]


# -- the entry point ----------------------------------------------------------------


def traced_name(cov: coverage.Coverage, frame: FrameType) -> str | None:
    """The name the tracer files ``frame``'s lines under, or None if it would not
    measure them (``source``, ``include``, ``omit``, a file tracer plugin's file)."""
    inorout: Any = getattr(cov, "_inorout", None)
    if inorout is None or not callable(getattr(inorout, "should_trace", None)):
        return None
    disposition = inorout.should_trace(frame.f_code.co_filename, frame)
    if not disposition.trace or disposition.file_tracer is not None:
        return None
    return str(disposition.source_filename)


def add_pending(
    cov: coverage.Coverage, name: str, lines: list[int], arcs: list[tuple[int, int]] | None
) -> bool:
    """Add ``lines`` (or, measuring branches, ``arcs``) to what the tracers hold for
    file ``name``, as they would have recorded them; False if that cannot be done."""
    collector: Any = getattr(cov, "_collector", None)
    if collector is None:
        return False
    points: list[Any] = list(lines)
    if arcs is not None:
        packed = getattr(getattr(collector, "core", None), "packed_arcs", None)
        if packed is None:
            return False
        points = [_packed(arc) for arc in arcs] if packed else list(arcs)
    collector.data.setdefault(name, set()).update(points)
    return True


def _packed(arc: tuple[int, int]) -> int:
    """An arc as the ctrace core stores it (``Collector.flush_data`` unpacks it so)."""
    first, second = arc
    return abs(first) | abs(second) << 28 | (first < 0) << 56 | (second < 0) << 57


# -- reports --------------------------------------------------------------------------


def reporting_doors(cov: coverage.Coverage) -> tuple[Callable[[Any], Any], Callable[[str], str]]:
    """How ``cov``'s reports make a file's reporter (the one door they all use) and how
    it names a file in its data and reports."""
    live: Any = cov
    return live._get_file_reporter, live._file_mapper


def use_reporting_doors(
    cov: coverage.Coverage, file_reporter: Callable[[Any], Any], file_name: Callable[[str], str]
) -> None:
    """Have ``cov``'s reports make each file's reporter and name each file so."""
    live: Any = cov
    live._get_file_reporter = file_reporter
    live._file_mapper = file_name


def exclusion_regex(cov: coverage.Coverage) -> str | None:
    """The regex of ``cov``'s excluded lines, as its file reporters use it."""
    live: Any = cov
    return live._exclude_regex("exclude")  # type: ignore[no-any-return]


def give_parser(reporter: Any, parser: PythonParser) -> None:
    """Have a ``PythonFileReporter`` use ``parser``, already parsed (elsewhere)."""
    reporter._parser = parser


def drop_syntax_tree(parser_or_reporter: Any) -> None:
    """Let a parser (or a file reporter's parser) go of its syntax tree, once nothing
    needs it: coverage.py drops it itself only once it has found the branches."""
    parser = getattr(parser_or_reporter, "_parser", parser_or_reporter)
    if parser is not None and hasattr(parser, "_ast_root"):
        parser._ast_root = None


#: What coverage.py's ``write_html`` removes from a page: the page's leading white space
#: and all white space before a line's end (blank lines with it).
_SPACE_AT_ENDS = r"(\A\s+)|(\s+$)"


def _write_html(fname: str, html: str) -> None:
    """coverage.py's ``write_html``, the same bytes, without its regex.

    ``re.sub(_SPACE_AT_ENDS, "", html, flags=re.MULTILINE)`` backtracks through every
    run of indentation: on the function and class index pages of a large codebase
    (tens of thousands of rows) it was half the time of an HTML refresh.
    """
    lines = (line.rstrip() for line in html.lstrip().split("\n"))
    page = "\n".join(line for line in lines if line) + "\n"
    with open(fname, "wb") as out:
        out.write(page.encode("ascii", "xmlcharrefreplace"))


@contextlib.contextmanager
def lean_html_writes() -> Iterator[None]:
    """coverage.py's HTML reporter writing its pages with :func:`_write_html`, if its
    own ``write_html`` is the one it stands for (the same regex); else as it is."""
    own: Any = getattr(coverage.html, "write_html", None)
    code = getattr(own, "__code__", None)
    if code is None or _SPACE_AT_ENDS not in code.co_consts:
        yield
        return
    coverage.html.write_html = _write_html
    try:
        yield
    finally:
        coverage.html.write_html = own


def lines_in_file(data_file: str) -> tuple[int, int] | None:
    """``(lines, files)`` a data file holds, read with SQL from coverage.py's schema (its
    own API asks once per file: 1.5 s at 3,000 files, too long for a process on its way
    out); None if it cannot be read so."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{data_file}?mode=ro", uri=True)) as db:
            per_file: dict[int, int] = {}
            for file_id, numbits in db.execute("select file_id, numbits from line_bits"):
                per_file[file_id] = per_file.get(file_id, 0) | int.from_bytes(numbits, "little")
            lines = sum(bits.bit_count() for bits in per_file.values())
            files = {key for key, bits in per_file.items() if bits}
            for file_id, _line in db.execute(
                "select file_id, fromno from arc where fromno > 0"
                " union select file_id, tono from arc where tono > 0"
            ):
                files.add(file_id)
                lines += 1
    except sqlite3.Error:
        return None
    return lines, len(files)
