"""Which end-to-end tests a change can affect: test impact analysis from per-test contexts.

A run with per-test contexts (``<node id>|setup``, ``|run``, ``|teardown``) already says
which server lines each test ran. :func:`record` turns that data into an *impact map*:
for each test, the files and lines it ran; for each file, git's id of the content that was
measured and the lines run at start-up; the commit. :func:`select` reads git's diff
against a commit (tracked files, and untracked files git does not ignore) and keeps the
tests the change can reach.

It fails safe: a test is left out only when the map proves the change cannot reach it.
A changed line inside a function selects every test that ran any line of that function
(lines inserted or deleted there count the same); a changed line outside any function
(module level, a class body, a ``def`` line or its decorators: run at import) selects
every test; a changed file the map does not measure (a template, settings, requirements)
selects every test unless an ignore pattern names it; a changed test file selects its own
tests, and a ``conftest.py`` or helper the tests under its folder; a file whose content
at the commit is not what was measured (a stale map) selects every test that ran it; a
test the map does not know always runs, and so do the tests whose requests were still
running when the next test's context began (their later lines went to that test).
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import CovGuardError
from .templates import NOTE_PREFIX, Rendered, read_for

if TYPE_CHECKING:
    from coverage import CoverageData

__all__ = [
    "MAP_NAME",
    "ImpactError",
    "ImpactMap",
    "Selection",
    "data_file",
    "data_files_since",
    "default_map",
    "distrust_of",
    "merge",
    "read",
    "record",
    "record_files",
    "save",
    "select",
    "templates_of",
    "work_tree",
]

#: The map's file name, beside the data files: a ``.gitignore`` line ``.covguard*`` covers it.
MAP_NAME = ".covguard-impact.json"
_FORMAT = 2
#: The phases the pytest plugin labels: ``<node id>|<phase>``.
_PHASES = ("setup", "run", "teardown")


class ImpactError(CovGuardError):
    """A map that cannot be read or made, or a git that cannot answer: run everything."""


@dataclass(frozen=True)
class ImpactMap:
    """What each test ran, at one commit. Paths are relative to the git work tree's root."""

    commit: str | None
    #: path -> git's blob id of the content measured (``git hash-object``).
    blobs: dict[str, str]
    #: path -> lines run before any test (at import, at start-up).
    startup: dict[str, list[int]]
    #: node id -> path -> sorted lines it ran (setup, run and teardown together).
    tests: dict[str, dict[str, list[int]]]
    #: Tests that must always run: a request of theirs crossed into the next test's context.
    unsure: frozenset[str] = frozenset()
    #: Why no test may be left out at all (the overlaps could not all be named), or None.
    distrust: str | None = None
    #: Where the node ids' paths start, relative to the work tree (pytest's rootdir).
    test_root: str = ""
    #: node id -> the templates it rendered, by their names below their loader's folder.
    templates: dict[str, list[str]] = field(default_factory=dict)
    #: template file (in the work tree) -> its name below its loader's folder.
    template_names: dict[str, str] = field(default_factory=dict)
    #: The loaders' folders (in the work tree) the templates were found in.
    template_roots: list[str] = field(default_factory=list)
    #: The names of the templates loaded before any test (at start-up).
    template_startup: list[str] = field(default_factory=list)
    #: Why the templates each test rendered are not known (then a changed template runs
    #: every test), or None.
    templates_unknown: str | None = "templates were not recorded"

    def to_json(self) -> str:
        """The map as compact JSON, on one line."""
        return json.dumps({
            "format": _FORMAT, "commit": self.commit, "blobs": self.blobs,
            "startup": self.startup, "tests": self.tests, "unsure": sorted(self.unsure),
            "distrust": self.distrust, "test_root": self.test_root,
            "templates": self.templates, "template_names": self.template_names,
            "template_roots": self.template_roots, "template_startup": self.template_startup,
            "templates_unknown": self.templates_unknown,
        }, separators=(",", ":"))  # fmt: skip

    def write(self, path: Path) -> None:
        """Write the map whole or not at all (a reader never sees half of it)."""
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(self.to_json())
        os.replace(partial, path)


def read(path: Path) -> ImpactMap:
    """The map at ``path``; :class:`ImpactError` naming what is wrong with it."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImpactError(
            f"no impact map at {path}: record one with a contexts run (pytest"
            " --covguard-contexts, covguard run --contexts, or covguard map)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ImpactError(f"the impact map {path} cannot be read ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
        raise ImpactError(f"the impact map {path} is not a format-{_FORMAT} map; record it again")
    try:
        return ImpactMap(
            commit=raw["commit"],
            blobs=dict(raw["blobs"]),
            startup={path: list(lines) for path, lines in raw["startup"].items()},
            tests={
                test: {p: list(ls) for p, ls in files.items()}
                for test, files in raw["tests"].items()
            },
            unsure=frozenset(raw["unsure"]),
            distrust=raw["distrust"],
            test_root=str(raw["test_root"]),
            templates={test: list(names) for test, names in raw["templates"].items()},
            template_names=dict(raw["template_names"]),
            template_roots=list(raw["template_roots"]),
            template_startup=list(raw["template_startup"]),
            templates_unknown=raw["templates_unknown"],
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ImpactError(f"the impact map {path} is damaged ({exc!r}); record it again") from None


def record(
    data: CoverageData,
    root: Path,
    *,
    unsure: Iterable[str] = (),
    distrust: str | None = None,
    test_root: Path | None = None,
    rendered: Rendered | None = None,
) -> ImpactMap:
    """The impact map of ``data`` (coverage data with per-test contexts), its paths made
    relative to ``root`` (git's work tree); files outside it (installed packages) are not
    a diff's to change and are left out. ``unsure``: the contexts (or node ids) of requests
    that crossed a switch. ``rendered``: the templates the servers noted per context
    (:func:`.templates.read_for`); without it a changed template runs every test."""
    commit = _commit(root)
    blobs: dict[str, str] = {}
    startup: dict[str, list[int]] = {}
    tests: dict[str, dict[str, set[int]]] = {}
    for measured in sorted(data.measured_files()):
        relative = _relative(measured, root)
        if relative is None:
            continue
        try:
            blobs[relative] = blob_id(Path(measured).read_bytes())
        except OSError:
            continue  # gone since: nothing of it to select on
        for line, contexts in (data.contexts_by_lineno(measured) or {}).items():
            for context in contexts:
                test = _test_of(context)
                if test is None:
                    startup.setdefault(relative, []).append(line)
                else:
                    tests.setdefault(test, {}).setdefault(relative, set()).add(line)
    known = _templates(rendered, data.measured_contexts(), root, blobs)
    return ImpactMap(
        commit=commit,
        blobs=blobs,
        startup={path: sorted(set(lines)) for path, lines in startup.items()},
        tests={
            test: {path: sorted(lines) for path, lines in files.items()}
            for test, files in tests.items()
        },
        unsure=frozenset(_test_of(label) or label for label in unsure),
        distrust=distrust,
        test_root=_relative(str(test_root or Path.cwd()), root) or "",
        **known,
    )


def _templates(
    rendered: Rendered | None, contexts: Iterable[str], root: Path, blobs: dict[str, str]
) -> dict[str, Any]:
    """The map's template fields from the servers' notes; the blob ids of the template
    files in the work tree are added to ``blobs`` (a stale one is seen as a Python file's)."""
    if rendered is None:
        return {}
    unknown = rendered.unknown
    unvouched = sorted(
        context for context in contexts if _test_of(context) and context not in rendered.contexts
    )
    if unknown is None and unvouched:
        unknown = f"no server noted the templates of {unvouched[0]!r}"
    tests: dict[str, set[str]] = {}
    startup: set[str] = set()
    names: dict[str, str] = {}
    roots: set[str] = set()
    for context, files in rendered.by_context.items():
        test = _test_of(context)
        for file, folder in files.items():
            name = posixpath.normpath(Path(os.path.relpath(file, folder)).as_posix())
            (startup if test is None else tests.setdefault(test, set())).add(name)
            relative = _relative(file, root)
            if relative is None or relative in names:
                continue
            try:
                blobs[relative] = blob_id(Path(file).read_bytes())
            except OSError:
                continue  # gone since: nothing of it to select on
            names[relative] = name
            folder_here = _relative(folder, root)
            if folder_here is not None:
                roots.add(folder_here)
    return {
        "templates": {test: sorted(found) for test, found in tests.items()},
        "template_names": names,
        "template_roots": sorted(roots),
        "template_startup": sorted(startup),
        "templates_unknown": unknown,
    }


def merge(old: ImpactMap, new: ImpactMap) -> ImpactMap:
    """``new``, keeping ``old``'s tests that did not run again when both measured the same
    contents at the same commit (a run of part of the suite); else ``new`` alone: a test
    dropped from the map is a test that always runs, never one left out wrongly."""
    same = old.commit == new.commit and old.test_root == new.test_root
    if not same or any(
        old.blobs[path] != new.blobs[path] for path in old.blobs.keys() & new.blobs.keys()
    ):
        return new
    startup = {path: sorted({*old.startup.get(path, ()), *new.startup.get(path, ())})
               for path in old.startup.keys() | new.startup.keys()}  # fmt: skip
    return ImpactMap(
        commit=new.commit,
        blobs={**old.blobs, **new.blobs},
        startup=startup,
        tests={**old.tests, **new.tests},
        unsure=(old.unsure - new.tests.keys()) | new.unsure,
        distrust=new.distrust or old.distrust,
        test_root=new.test_root,
        templates={**old.templates, **new.templates},
        template_names={**old.template_names, **new.template_names},
        template_roots=sorted({*old.template_roots, *new.template_roots}),
        template_startup=sorted({*old.template_startup, *new.template_startup}),
        templates_unknown=new.templates_unknown or old.templates_unknown,
    )


def save(new: ImpactMap, path: Path) -> ImpactMap:
    """Write ``new`` to ``path``, merged with the map there (:func:`merge`); the map written."""
    with contextlib.suppress(ImpactError):
        new = merge(read(path), new)
    new.write(path)
    return new


def distrust_of(count: int, named: int) -> str | None:
    """Why the map cannot be trusted at all when ``count`` requests crossed a context switch
    and only ``named`` of them are named (a server names the first few), else None."""
    if count <= named:
        return None
    return (
        f"{count} requests ran across a context switch and {named} are named: the map cannot"
        " say whose lines the others ran; let each request finish before its test ends, and"
        " record it again"
    )


def record_files(
    files: Iterable[Path],
    root: Path,
    *,
    unsure: Iterable[str] = (),
    distrust: str | None = None,
    test_root: Path | None = None,
) -> ImpactMap:
    """:func:`record` of data files (or folders of them) combined as ``coverage combine``
    combines them (the configuration's ``[paths]`` honoured), in a scratch folder: the
    files stay as they are. The templates come from the notes beside them."""
    import coverage

    files = list(files)
    rendered = templates_of(files)
    with tempfile.TemporaryDirectory(prefix="covguard-map-") as scratch:
        cov = coverage.Coverage(data_file=os.path.join(scratch, ".coverage"))
        try:
            cov.combine([str(file) for file in files], keep=True)
            data = cov.get_data()
        except coverage.CoverageException as exc:
            raise ImpactError(f"no impact map: {exc}") from None
        try:
            return record(
                data, root, unsure=unsure, distrust=distrust, test_root=test_root,
                rendered=rendered,
            )  # fmt: skip
        finally:
            data.close(force=True)  # before its folder goes


def default_map() -> Path:
    """Where the map goes: beside coverage's data file (``[run] data_file``)."""
    return data_file().parent / MAP_NAME


def data_files_since(began: float) -> list[Path]:
    """The data files (``.coverage`` and its parallel ``.coverage.*``) written since
    ``began`` (a time.time()): the ones servers of this run saved."""
    base = data_file()
    found = []
    for file in [base, *base.parent.glob(f"{base.name}.*")]:
        with contextlib.suppress(OSError):
            if _parallel(file) and file.stat().st_mtime >= began - 1:
                found.append(file)
    return sorted(found)


def templates_of(given: Iterable[Path]) -> Rendered:
    """The templates the servers that wrote these data files (or the parallel files in
    these folders) noted per context: read before ``coverage combine`` deletes them."""
    return read_for(_data_files_in(given))


def _data_files_in(given: Iterable[Path]) -> list[Path]:
    """The data files among ``given``, a folder standing for the parallel files in it (as
    ``coverage combine`` reads a folder)."""
    found = []
    for path in given:
        if path.is_dir():
            found += [file for file in path.glob(f"{data_file().name}.*") if _parallel(file)]
        else:
            found.append(path)
    return found


def _parallel(file: Path) -> bool:
    """A parallel data file (not a journal, nor a file being written)."""
    return file.is_file() and not file.name.endswith(("-journal", "-wal", "-shm", ".tmp"))


def data_file() -> Path:
    """coverage's data file (``[run] data_file``, default ``.coverage``), absolute."""
    import coverage

    configured = coverage.Coverage().get_option("run:data_file")
    return Path(str(configured or ".coverage")).resolve()


def _test_of(context: str) -> str | None:
    """The node id in a label ``<node id>|<phase>``; None for the empty (start-up) context
    and for labels that are not a test's (a context set through the route by hand)."""
    test, bar, phase = context.rpartition("|")
    return test if bar and test and phase in _PHASES else None


def blob_id(content: bytes) -> str:
    """git's object id of a file's content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


@dataclass
class Selection:
    """The tests a change can affect, each with why; or every test, with why."""

    ref: str | None
    #: Where the node ids' paths start (``ImpactMap.test_root``).
    test_root: str = ""
    #: node id -> the reasons it was chosen (what changed that it ran).
    chosen: dict[str, list[str]] = field(default_factory=dict)
    #: Why every test runs (the first reason found), or None.
    everything: str | None = None
    #: Test files (and folders) whose tests all run, with why: path -> reason.
    folders: dict[str, str] = field(default_factory=dict)

    def why(self, test: str, known: bool) -> list[str] | None:
        """Why ``test`` runs; None if the change cannot affect it. ``known``: it is in the
        map."""
        if self.everything is not None:
            return [self.everything]
        if not known:
            return ["not in the impact map (new or renamed)"]
        reasons = list(self.chosen.get(test, []))
        file = _test_file(self.test_root, test)
        for folder, reason in self.folders.items():
            if file == folder or file.startswith(folder.rstrip("/") + "/") or folder == "":
                reasons.append(reason)
        return reasons or None


def select(
    impact: ImpactMap, root: Path, ref: str | None = None, ignore: Iterable[str] = ()
) -> Selection:
    """The tests of ``impact`` that the change from ``ref`` (default: the map's commit) to
    the work tree can affect. Never raises for git's sake: what cannot be known selects
    every test, with the reason."""
    ref = ref or impact.commit
    selection = Selection(ref, impact.test_root)
    if impact.distrust:
        selection.everything = impact.distrust
        return selection
    if not ref:
        selection.everything = "the impact map names no commit (recorded outside git)"
        return selection
    try:
        changes = _changes(root, ref)
        at_ref = _blobs_at(root, ref)
    except ImpactError as exc:
        selection.everything = str(exc)
        return selection
    patterns = list(ignore)
    test_files = {_test_file(impact.test_root, test) for test in impact.tests}
    touching = _touching(impact)
    stale = {path for path, blob in impact.blobs.items() if at_ref.get(path) != blob}
    for path in sorted(stale):  # changed or not since ref: the map's lines are not its lines
        if path in impact.template_names:
            _template_change(selection, impact, path, impact.template_names[path], "stale map")
        elif impact.startup.get(path):  # its module level, run at import, may differ too
            selection.everything = (
                f"{path} is not what the map measured (stale map), and it ran at start-up"
            )
        else:
            reason = f"{path} is not what the map measured (stale map); the test ran it"
            _choose(selection, touching.get(path, ()), reason)
        if selection.everything is not None:
            return selection
    for path, hunks in sorted(changes.items()):
        if path in stale:
            continue
        if path in impact.template_names:
            _template_change(selection, impact, path, impact.template_names[path])
        elif path in impact.blobs:
            _measured_change(selection, impact, root, ref, path, hunks, touching)
        elif path in test_files or _is_test_file(path):
            selection.folders[path] = f"{path}, a test file, changed: its tests run"
        elif _ours(path) or any(fnmatch.fnmatch(path, pattern) for pattern in patterns):
            continue
        elif (name := _template_name(impact, path)) is not None:
            _template_change(selection, impact, path, name)
        elif (folder := _tests_folder(path, test_files)) is not None:
            selection.folders[folder] = f"{path} changed: a helper of the tests under {folder}/"
        else:
            unknown = f"; {impact.templates_unknown}" if impact.templates_unknown else ""
            selection.everything = (
                f"{path} changed and the map does not measure it (a template, settings, data?"
                f"{unknown}); if no test can depend on it, name it in covguard_affected_ignore"
                " (pytest) or --ignore (covguard affected)"
            )
        if selection.everything is not None:
            return selection
    for test in impact.unsure:
        if test in impact.tests:
            selection.chosen.setdefault(test, []).append(
                "a request of this test ran on into the next test's context: its lines are not"
                " all known"
            )
    return selection


def _test_file(test_root: str, test: str) -> str:
    """The work tree's path of a node id's file."""
    return posixpath.normpath(posixpath.join(test_root, test.partition("::")[0]))


def _ours(path: str) -> bool:
    """coverage.py's data files, the map and the servers' notes of templates: what a run
    writes, never what it reads."""
    name = PurePosixPath(path).name
    return name in {".coverage", MAP_NAME} or name.startswith(
        (".coverage.", f"{MAP_NAME}.", NOTE_PREFIX)
    )


def _is_test_file(path: str) -> bool:
    """A file pytest collects by default (``test_*.py``, ``*_test.py``): a new one's tests
    are not in the map, so they run anyway."""
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _tests_folder(path: str, test_files: set[str]) -> str | None:
    """The folder whose tests a changed helper can reach, or None (not a tests' helper): a
    ``conftest.py``'s own folder (below the work tree's root); any other file's outermost
    folder below the root that holds tests (a helper may be imported from anywhere there)."""
    parents = [str(parent) for parent in reversed(PurePosixPath(path).parents)][1:]
    if PurePosixPath(path).name == "conftest.py":
        parents = parents[-1:]
    for folder in parents:
        if any(test.startswith(folder + "/") for test in test_files):
            return folder
    return None


def _template_name(impact: ImpactMap, path: str) -> str | None:
    """``path``'s name below the innermost template folder holding it (a template no test
    rendered, or one that would now shadow another of that name), or None."""
    if path.endswith(".py"):
        return None
    found = None
    for folder in impact.template_roots:
        if folder in {"", "."} or path.startswith(folder.rstrip("/") + "/"):
            below = path if folder in {"", "."} else path[len(folder.rstrip("/")) + 1 :]
            if found is None or len(below) < len(found):
                found = below
    return found


def _template_change(
    selection: Selection, impact: ImpactMap, path: str, name: str, why: str = "changed"
) -> None:
    """A template file changed (or appeared, or went): the tests that rendered a template
    of that name, from any folder (a new file may shadow one found further on)."""
    if impact.templates_unknown is not None:
        selection.everything = (
            f"{path} changed, a template, and the templates each test rendered are not known:"
            f" {impact.templates_unknown}"
        )
    elif name in impact.template_startup:
        selection.everything = f"{path} changed, the template {name} loaded at start-up"
    else:
        rendered = [test for test, names in impact.templates.items() if name in names]
        _choose(selection, rendered, f"{path} ({why}): the test rendered {name}")


def _choose(selection: Selection, tests: Iterable[str], reason: str) -> None:
    for test in tests:
        selection.chosen.setdefault(test, []).append(reason)


def _touching(impact: ImpactMap) -> dict[str, list[str]]:
    """path -> the tests that ran any line of it."""
    touching: dict[str, list[str]] = {}
    for test, files in impact.tests.items():
        for path in files:
            touching.setdefault(path, []).append(test)
    return touching


def _measured_change(
    selection: Selection,
    impact: ImpactMap,
    root: Path,
    ref: str,
    path: str,
    hunks: list[tuple[int, int]] | None,
    touching: Mapping[str, list[str]],
) -> None:
    """A measured file, unchanged since the map, changed now: by function where it can."""
    if hunks is None:  # removed, binary, or not Python: every test that ran it
        _choose(selection, touching.get(path, ()), f"{path} changed as a whole; the test ran it")
        return
    try:
        functions = _function_bodies(_git(root, "show", f"{ref}:{path}"))
    except (ImpactError, SyntaxError, ValueError):
        _choose(selection, touching.get(path, ()), f"{path} changed; the test ran it")
        return
    for start, count in hunks:
        # Old lines start..start+count-1 changed; count 0: lines inserted after ``start``.
        lines = range(start, start + count) if count else range(start, start + 2)
        body = _innermost(functions, lines)
        if body is None:
            selection.everything = (
                f"{path}:{start} changed outside any function (module level, a class body, a"
                " def line: run at import)"
            )
            return
        first, last, name = body
        started = impact.startup.get(path, [])
        at = bisect.bisect_left(started, first)
        if at < len(started) and started[at] <= last:  # a decorator's body, a setup helper...
            selection.everything = (
                f"{path}:{start} changed, in {name}(), which ran at start-up (before any test)"
            )
            return
        for test in touching.get(path, ()):
            ran = impact.tests[test][path]
            at = bisect.bisect_left(ran, first)
            if at < len(ran) and ran[at] <= last:
                reason = f"{path}:{start} changed, in {name}(); the test ran {name}()"
                selection.chosen.setdefault(test, []).append(reason)


def _function_bodies(source: str) -> list[tuple[int, int, str]]:
    """Each function's body as (first line, last line, name), innermost last among those
    that nest."""
    bodies = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            bodies.append((node.body[0].lineno, node.end_lineno, node.name))
    return sorted(bodies, key=lambda body: (body[0], -body[1]))


def _innermost(bodies: list[tuple[int, int, str]], lines: range) -> tuple[int, int, str] | None:
    """The innermost function body holding every line of ``lines``, or None."""
    found = None
    for first, last, name in bodies:
        if first <= lines.start and lines.stop - 1 <= last:
            found = (first, last, name)  # sorted by start: a later hit nests deeper
    return found


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def _changes(root: Path, ref: str) -> dict[str, list[tuple[int, int]] | None]:
    """path -> the old side's changed hunks (start, count), or None for a change as a whole
    (added, removed, binary): the tracked files from ``ref`` to the work tree, and the
    untracked files git does not ignore."""
    _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    changes: dict[str, list[tuple[int, int]] | None] = {}
    names = _git(root, "diff", "--name-status", "--no-renames", "-z", ref, "--").split("\0")
    for status, path in zip(names[0::2], names[1::2], strict=False):
        changes[path] = None if status in {"A", "D"} else []
    for path in _git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        if path:
            changes[path] = None
    python = [path for path, hunks in changes.items() if hunks == [] and path.endswith(".py")]
    for path in changes:
        if changes[path] == [] and path not in python:
            changes[path] = None
    if python:
        current = None
        diff = _git(root, "diff", "-U0", "--no-renames", "--no-ext-diff", "--no-color", ref,
                    "--", *python)  # fmt: skip
        for line in diff.splitlines():
            if line.startswith("diff --git "):
                current = None
            elif line.startswith("--- "):
                continue
            elif line.startswith("+++ "):
                name = line[4:].removeprefix("b/")
                current = name if name in changes else None
            elif line.startswith("Binary files") and current:
                changes[current] = None
            elif current is not None and (match := _HUNK.match(line)):
                hunks = changes[current]
                if hunks is not None:
                    count = 1 if match[2] is None else int(match[2])
                    hunks.append((int(match[1]), count))
    return changes


def _blobs_at(root: Path, ref: str) -> dict[str, str]:
    """path -> blob id of every file at ``ref``."""
    blobs = {}
    for entry in _git(root, "ls-tree", "-r", "--full-tree", "-z", ref).split("\0"):
        meta, tab, path = entry.partition("\t")
        if tab:
            blobs[path] = meta.split()[2]
    return blobs


def _commit(root: Path) -> str | None:
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip() or None
    except ImpactError:
        return None


def _relative(measured: str, root: Path) -> str | None:
    try:
        return Path(measured).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def work_tree(start: Path) -> Path | None:
    """git's work tree holding ``start``, or None outside git."""
    try:
        return Path(_git(start, "rev-parse", "--show-toplevel").strip())
    except ImpactError:
        return None


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-c", "core.quotePath=false", *args], cwd=root, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImpactError(f"git could not run ({exc})") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ImpactError(f"git {args[0]} failed: {said}")
    return done.stdout
