"""coverage.py's report of a live server's data, cheap enough to ask for every few seconds.

``coverage report`` parses every measured file each time it runs: on a large codebase
(a whole Django, 74k statements) that is seconds of CPU. A dashboard asking every two
seconds would spend them inside the server whose end-to-end tests it watches. Three
things keep the figures coverage.py's own while making them cheap:

- **Each file is analysed once per version.** The analysis of a source file (its
  statements, exclusions, branches) lives in coverage.py's ``FileReporter``; we keep
  each one while the file's size and mtime stay the same and hand it to coverage.py's
  own reporting (the one door its reporters use, :mod:`.covcompat`), so only the
  executed lines are read again. Numbers, JSON and HTML are still coverage.py's.
- **On a thread the tracer does not follow.** The work runs on one thread of its own,
  with no trace function: under ctrace, analysis in a traced thread is about twice as
  slow, and it competes with the requests being measured.
- **Not at all when nothing changed.** Each process's data has a fingerprint
  (:meth:`CoverageSession.fingerprint`); a report is made again only when one changed.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import posixpath
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import coverage
from coverage import Coverage

from .covcompat import (
    GlobMatcher,
    Numbers,
    PythonFileReporter,
    drop_syntax_tree,
    exclusion_regex,
    get_analysis_to_report,
    give_parser,
    lean_html_writes,
    prep_patterns,
    reporting_doors,
    use_reporting_doors,
)
from .parsing import HELPED_FROM, parse_all
from .session import CoverageSession
from .threads import leave_signals

__all__ = ["Reports"]

_T = TypeVar("_T")


class Reports:
    """The reports of one session's data: summaries and coverage.py's HTML report.

    :param session: the measuring session whose report settings apply.
    """

    def __init__(self, session: CoverageSession) -> None:
        self.session = session
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="covguard-report", initializer=_untraced,
        )  # fmt: skip
        # filename -> ((size, mtime_ns), coverage.py's FileReporter for that version)
        self._reporters: dict[str, tuple[tuple[int, int], Any]] = {}
        # file name -> its name in the data (a realpath each, without relative_files)
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` on the reporting thread (untraced, one job at a time)."""
        return self._executor.submit(_apart_from_the_heap, work, *args).result()

    def figures(self, parts: list[coverage.CoverageData]) -> dict[str, Any]:
        """coverage.py's own figures for the data of ``parts`` (one per process), those
        ``coverage report`` prints.

        Its analysis does the counting (statements, branches, partial branches,
        exclusions, report omit/include) and its ``Numbers`` the rounding
        (``precision``), as in its summary reporter; only the shape is ours. (Its JSON
        reporter gives the same figures, but also parses every file again for its
        functions and classes, and writes them all: 20 times the work at 74k
        statements.)
        """
        with self.coverage_of(parts) as cov:
            precision = cov.get_option("report:precision")
            assert isinstance(precision, int)
            total = Numbers(precision=precision)
            files = []
            folders: dict[str, Numbers] = {}
            for reporter, analysis in get_analysis_to_report(cov, None):
                total += analysis.numbers
                name = reporter.relative_filename()
                shown = _shown_name(name)
                files.append(_row(analysis.numbers, file=name, name=shown))
                folder = posixpath.dirname(shown) or "."
                folders[folder] = folders.get(folder, Numbers(precision=precision)) + (
                    analysis.numbers
                )
            files.sort(key=lambda row: (row["percent"], row["file"]))  # least covered first
            self._lighten(cov)
        # Each folder's own files (not its subfolders'), summed by coverage.py's Numbers,
        # as its total is: a project of 900 files is read folder by folder.
        by_folder = [_row(numbers, folder=name) for name, numbers in sorted(folders.items())]
        return {**_row(total), "files": files, "folders": by_folder}

    def html(self, parts: list[coverage.CoverageData], folder: str) -> None:
        """coverage.py's HTML report of the data of ``parts``, written to ``folder``,
        incremental: a page is written again only when its file or its data changed."""
        with self.coverage_of(parts) as cov:
            contexts = cov.get_data().measured_contexts() - {""}
            with lean_html_writes():
                cov.html_report(directory=folder, show_contexts=bool(contexts))
            self._lighten(cov)

    def _lighten(self, cov: coverage.Coverage) -> None:
        """Let the kept analyses go of their syntax trees, once nothing needs them.

        coverage.py drops a file's tree itself once it has found its branches; with
        line data it never looks for them, and the trees stay: some 190 MB at 74k
        statements, which every full garbage collection of the server then walks
        (2.4 s a time). Without them, it takes 0.08 s.
        """
        if cov.get_data().has_arcs():
            return
        with self._lock:
            kept = [reporter for _, reporter in self._reporters.values()]
        for reporter in kept:
            drop_syntax_tree(reporter)

    @contextlib.contextmanager
    def coverage_of(self, parts: list[coverage.CoverageData]) -> Iterator[coverage.Coverage]:
        """The session's reporting :class:`coverage.Coverage` of the processes' data
        ``parts`` (closed once read), with the file reporters kept from one report to
        the next; its data is closed when the block ends.

        The data stays in memory: read from a file, each file's lines would cost a
        connection to it (885 files: a third of the time). coverage.py closes an
        in-memory database only when told to (``close(force=True)``): each report left
        one open, 0.5 MB of native memory that a dashboard polling all day piled up.
        """
        cov = self.session.reporter(None)
        data = cov.get_data()
        try:
            for part in parts:
                data.update(part)
                part.close(force=True)
            self._serve_kept_reporters(cov)
            yield cov
        finally:
            data.close(force=True)

    def _serve_kept_reporters(self, cov: coverage.Coverage) -> None:
        """Have ``cov`` use the kept file reporters, and name files as it named them."""
        create, name = reporting_doors(cov)

        def file_reporter(morf: Any) -> Any:
            version = _version(morf)
            if version is None:  # not a file name, or gone: coverage says so itself
                return create(morf)
            with self._lock:
                kept = self._reporters.get(morf)
            if kept is not None and kept[0] == version:
                return kept[1]
            return self._keep(morf, version, create(morf))

        def file_name(path: str) -> str:
            known = self._names.get(path)
            if known is None:
                known = self._names[path] = name(path)
            return known

        use_reporting_doors(cov, file_reporter, file_name)
        self._parse_ahead(cov, create)

    def _keep(self, morf: str, version: tuple[int, int], reporter: Any) -> Any:
        """Keep ``reporter``, coverage.py's FileReporter of that version of ``morf``."""
        # Its functions and classes, for the HTML report's index pages: coverage.py
        # parses the file again for them at every report (half of a refresh's time).
        regions = getattr(reporter, "code_regions", None)
        if regions is not None:
            reporter.code_regions = functools.cache(regions)
        with self._lock:
            self._reporters[morf] = (version, reporter)
        return reporter

    def _parse_ahead(self, cov: Coverage, create: Callable[[str], Any]) -> None:
        """Parse the reported files without a kept analysis at once, in helper processes
        (:mod:`.parsing`), when there are many: the first report of a large codebase."""
        include, omit = cov.get_option("report:include"), cov.get_option("report:omit")
        assert include is None or isinstance(include, list)
        assert omit is None or isinstance(omit, list)
        included = GlobMatcher(prep_patterns(include), "report_include") if include else None
        omitted = GlobMatcher(prep_patterns(omit), "report_omit") if omit else None
        fresh = []
        for morf in cov.get_data().measured_files():
            version = _version(morf)
            with self._lock:
                kept = self._reporters.get(morf)
            if version is None or (kept is not None and kept[0] == version):
                continue
            reporter = create(morf)
            if (
                type(reporter) is PythonFileReporter
                and (included is None or included.match(reporter.filename))
                and (omitted is None or not omitted.match(reporter.filename))
            ):
                fresh.append((morf, version, reporter))
        if len(fresh) < HELPED_FROM:
            return
        exclude = exclusion_regex(cov)
        parsed = parse_all([r.filename for _, _, r in fresh], exclude, cov.get_data().has_arcs())
        for morf, version, reporter in fresh:
            parser = parsed.get(reporter.filename)
            if parser is not None:
                give_parser(reporter, parser)
                self._keep(morf, version, reporter)


def _version(morf: Any) -> tuple[int, int] | None:
    """The version of file ``morf`` (size, mtime), or None for a module or a file gone."""
    if not isinstance(morf, str):
        return None
    try:
        info = os.stat(morf)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


def _shown_name(name: str) -> str:
    """How the dashboard shows a file coverage.py names ``name``: a file of an installed
    package (``/…/venv/lib/python3.11/site-packages/wagtail/admin/views.py``, absolute in
    ``coverage report`` since it is outside the current folder) as
    ``site-packages/wagtail/admin/views.py``, so that 900 files of a real project read as
    the packages they are; any other name as coverage.py gives it, with ``/``."""
    if os.path.isabs(name):
        for folder in _package_folders():
            if name.startswith(folder + os.sep):
                return "site-packages/" + name[len(folder) + 1 :].replace(os.sep, "/")
    return name.replace(os.sep, "/")


@functools.cache
def _package_folders() -> list[str]:
    """The interpreter's folders of installed packages, as given and as real paths
    (coverage.py names files by their real path), deepest first."""
    import site
    import sysconfig

    found = [*sys.path, *site.getsitepackages(), site.getusersitepackages(),
             *(sysconfig.get_path(key) for key in ("purelib", "platlib"))]  # fmt: skip
    named = {path for entry in found if entry
             for path in (os.path.abspath(entry), os.path.realpath(entry))
             if os.path.basename(path) in {"site-packages", "dist-packages"}}  # fmt: skip
    return sorted(named, key=len, reverse=True)


def _row(numbers: Numbers, **more: str) -> dict[str, Any]:
    """A summary row; ``shown`` is coverage.py's own string for the percentage."""
    return {
        **more,
        "statements": numbers.n_statements,
        "missing": numbers.n_missing,
        "excluded": numbers.n_excluded,
        "branches": numbers.n_branches,
        "partial": numbers.n_partial_branches,
        "missing_branches": numbers.n_missing_branches,
        "percent": numbers.pc_covered,
        "shown": numbers.pc_covered_str,
    }


def _untraced() -> None:
    """The reporting thread: no trace function, and the servers' signals left to them."""
    sys.settrace(None)
    leave_signals()


def _apart_from_the_heap(work: Callable[..., _T], *args: Any) -> _T:
    """``work(*args)`` with the server's own objects out of the garbage collector's way.

    Analysing sources makes many objects, and each full collection they trigger would
    walk the whole heap of the server (a Django app and all): ``gc.freeze`` sets what
    exists now aside until the work is done. A report's :class:`coverage.Coverage` is
    full of reference cycles, which only a full collection frees: one now, over what
    the work made alone, costs little, where waiting for the server's next full
    collection piled up 7 KB a report. The young generations are collected first (they
    are small): ``gc.unfreeze`` hands every object back to the oldest generation, and
    the garbage the app's requests had just made would wait there for a full collection
    that its own heuristics seldom start (8-33 KB a report under load, linear over a
    soak).
    """
    gc.collect(1)
    gc.freeze()
    try:
        return work(*args)
    finally:
        gc.collect()
        gc.unfreeze()
