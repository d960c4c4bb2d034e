"""What wsgi_covguard expects of each private part of coverage.py it uses (``covcompat``).

Each test pins one part against the coverage.py installed, in-process and with a real
tracer: ``make test`` runs them on the oldest and the newest coverage.py that
``pyproject.toml`` allows, so a release that changes one fails here, by name, before it
makes a number wrong. A part gone is refused (or said) in one line at start-up.
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import re
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import coverage
import pytest
from live import ROOT, TOKEN
from packaging.specifiers import SpecifierSet

from wsgi_covguard import covcompat

pytestmark = pytest.mark.in_process

WORK = """\
def work(n):
    total = 0
    for i in range(n):
        if i % 2:
            total += i
    return total


def other():
    return 1  # pragma: no cover
"""

CORES = ["ctrace", "sysmon"] if sys.version_info >= (3, 12) else ["ctrace"]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"work_{uuid.uuid4().hex}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "work.py"
    path.parent.mkdir()
    path.write_text(WORK)
    return path


def started(
    tmp_path: Path, work: Path, *, core: str = "ctrace", branch: bool = False
) -> coverage.Coverage:
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"), source=[str(work.parent)],
                            branch=branch, config_file=False)  # fmt: skip
    cov.set_option("run:core", core)
    cov.start()
    return cov


@pytest.fixture
def stopped() -> Iterator[list[coverage.Coverage]]:
    """Coverage objects to stop at teardown, whatever the test did."""
    kept: list[coverage.Coverage] = []
    yield kept
    for cov in kept:
        cov.stop()


def test_the_installed_coverage_is_one_pyproject_allows_and_has_every_part(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"coverage{covcompat.SUPPORTED}" in project["dependencies"]
    assert coverage.__version__ in SpecifierSet(covcompat.SUPPORTED)
    for core in CORES:
        cov = started(tmp_path, work, core=core)
        stopped.append(cov)
        assert covcompat.check(cov) == []
        # Asked at every context switch: the collector's tracer name, not sys_info() (0.9 ms).
        told = dict(cov.sys_info())["core"]
        assert covcompat._sysmon(cov) is (told == "SysMonitor") is (core == "sysmon")
        cov.stop()


@pytest.mark.parametrize("core", CORES)
def test_a_copy_of_the_live_data_holds_the_pending_lines_and_writes_nothing(
    core: str, tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work, core=core)
    stopped.append(cov)
    load(work).work(3)
    assert covcompat.pending_points(cov) > 0
    copy = covcompat.copy_measured(cov, "phase-1")
    cov.stop()
    name = str(work.resolve())
    try:
        assert sorted(copy.lines(name) or []) == [1, 2, 3, 4, 5, 6, 9]
        assert copy.measured_contexts() == {"phase-1"}
    finally:
        copy.close(force=True)
    assert not list(tmp_path.glob(".coverage*")), "a reader's copy writes no data file"
    assert covcompat.written_file(cov) == str(tmp_path / ".coverage")
    cov.save()  # the pending lines were handed back for the real save
    saved = coverage.CoverageData(basename=str(tmp_path / ".coverage"))
    saved.read()
    assert sorted(saved.lines(name) or []) == [1, 2, 3, 4, 5, 6, 9]
    assert covcompat.lines_in_file(str(tmp_path / ".coverage")) == (7, 1)


def test_an_erased_branch_data_file_is_written_again_with_its_arcs(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work, branch=True)
    stopped.append(cov)
    module = load(work)
    cov.save()
    data = cov.get_data()
    data.erase()
    covcompat.forget_kind(data)
    module.work(2)
    cov.stop()
    cov.save()
    saved = coverage.CoverageData(basename=str(tmp_path / ".coverage"))
    saved.read()
    assert saved.has_arcs()
    assert (4, 5) in (saved.arcs(str(work.resolve())) or [])


def test_a_thread_the_tracer_never_reached_is_measured_once_handed_the_installer(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work)  # ctrace: the core that follows only threading's threads
    stopped.append(cov)
    module = load(work)
    install = covcompat.thread_installer(cov)
    assert install is not None
    done = threading.Event()

    def raw_thread(installer: object) -> None:
        if installer is not None:
            sys.settrace(installer)  # type: ignore[arg-type]
        module.work(2)
        done.set()

    for installer in (None, install):
        done.clear()
        _thread.start_new_thread(raw_thread, (installer,))
        assert done.wait(10)
        copy = covcompat.copy_measured(cov, None)
        lines = set(copy.lines(str(work.resolve())) or [])
        copy.close(force=True)
        assert (5 in lines) is (installer is not None), lines
    assert not covcompat.is_paused(cov)
    cov.stop()
    assert covcompat.is_paused(cov)


#: Every core with lines, and with arcs where it records them (sysmon: Python 3.14+; branch
#: mode chooses ctrace before that).
KINDS = [(core, False) for core in CORES] + [
    (core, True) for core in CORES if core != "sysmon" or sys.version_info >= (3, 14)
]


@pytest.mark.parametrize(("core", "branch"), KINDS)
def test_lines_added_where_the_tracer_keeps_its_own_are_saved_as_traced(
    core: str, branch: bool, tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work, core=core, branch=branch)
    stopped.append(cov)
    module = load(work)
    frame = sys._getframe()
    assert covcompat.traced_name(cov, frame) is None, "this test file is outside source"
    name = str(work)
    arcs = [(-1, 1), (1, 9), (9, -1), (70000, -70001)] if branch else None
    assert covcompat.add_pending(cov, name, [1, 9], arcs)
    module.work(0)
    cov.stop()
    cov.save()
    saved = coverage.CoverageData(basename=str(tmp_path / ".coverage"))
    saved.read()
    if branch:
        assert {(-1, 1), (1, 9), (9, -1), (70000, -70001)} <= set(
            saved.arcs(str(work.resolve())) or []
        )
    else:
        assert {1, 9} <= set(saved.lines(str(work.resolve())) or [])


def test_reports_make_file_reporters_and_names_through_the_doors_we_use(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work)
    stopped.append(cov)
    load(work).work(0)
    cov.stop()
    cov.save()
    made: list[str] = []
    named: list[str] = []
    make, name = covcompat.reporting_doors(cov)

    def making(morf: object) -> object:
        made.append(str(morf))
        return make(morf)

    def naming(path: str) -> str:
        named.append(path)
        return name(path)

    covcompat.use_reporting_doors(cov, making, naming)
    with open(os.devnull, "w") as nowhere:
        percent = cov.report(file=nowhere)
    assert made == [str(work.resolve())]
    assert percent == pytest.approx(100.0 * 5 / 7), "lines 4 and 5 not run"
    assert named, "reports name files through it"
    assert re.search(covcompat.exclusion_regex(cov) or "^$", "x = 1  # pragma: no cover")
    cov.erase()
    assert covcompat.reporting_doors(cov)[1](str(work)) == str(work.resolve())


def test_a_parser_made_elsewhere_reports_what_a_fresh_one_does(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work, branch=True)
    stopped.append(cov)
    load(work).work(3)
    cov.stop()
    cov.save()
    fresh = cov.analysis2(str(work))
    reporter = covcompat.reporting_doors(cov)[0](str(work.resolve()))
    parser = covcompat.PythonParser(filename=str(work), exclude=covcompat.exclusion_regex(cov))
    parser.parse_source()
    parser.arcs()
    covcompat.drop_syntax_tree(parser)
    covcompat.give_parser(reporter, parser)
    assert reporter.lines() == set(fresh[1])
    assert reporter.excluded_lines() == {10}


def test_a_missing_part_the_data_needs_refuses_the_start_in_one_line(tmp_path: Path) -> None:
    """A coverage.py without a part: the part is taken away before start() runs."""
    (tmp_path / "entry.py").write_text(
        "import coverage.inorout\n"
        "del coverage.inorout.InOrOut.find_possibly_unexecuted_files\n"
        "import wsgi_covguard\n"
        "wsgi_covguard.start()\n"
    )
    env = {**os.environ, "COVGUARD_TOKEN": TOKEN}
    done = subprocess.run([sys.executable, "-c", "import entry"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"covguard: coverage.py {coverage.__version__} has no"
        " InOrOut.find_possibly_unexecuted_files, which wsgi_covguard needs for listing the"
        f" files that never ran; install coverage{covcompat.SUPPORTED} (the versions it is"
        " tested with)"
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob(".coverage*")), "nothing measured, nothing written"


def test_a_missing_part_that_only_adds_is_said(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work)
    stopped.append(cov)
    core = cov._collector.core  # type: ignore[union-attr]
    packed = core.packed_arcs
    del core.packed_arcs
    try:
        assert covcompat.check(cov) == [
            f"coverage.py {coverage.__version__} has no Collector.core.packed_arcs: no measuring"
            f" the entry point a server imports, with arcs (tested: coverage{covcompat.SUPPORTED})"
        ]
        assert not covcompat.add_pending(cov, str(work), [1], [(-1, 1)])
        assert covcompat.add_pending(cov, str(work), [1], None), "lines need no packing"
    finally:
        core.packed_arcs = packed


def test_the_options_a_report_copies_are_known_by_name(
    tmp_path: Path, work: Path, stopped: list[coverage.Coverage]
) -> None:
    cov = started(tmp_path, work)
    stopped.append(cov)
    names = covcompat.option_names(cov)
    assert {"run:source", "run:omit", "report:precision", "report:exclude_lines"} <= set(names)
    cov.set_option("report:precision", 3)
    assert cov.get_option("report:precision") == 3, "read and set by those names"


#: The private parts of coverage.py: named in covcompat only.
PRIVATE = ("_collector", "_inorout", "._data", "_file_mapper", "_get_file_reporter", "._parser",
           "_has_lines", "_installation_trace", "_exclude_regex", "CONFIG_FILE_OPTIONS",
           "write_html", "packed_arcs", "line_bits")  # fmt: skip
#: Its modules beyond the package itself, which its documentation does not list.
SUBMODULE = re.compile(r"^\s*(from|import) coverage\.", re.MULTILINE)


def test_no_other_module_touches_coverage_private_parts() -> None:
    touched = set()
    for module in (ROOT / "wsgi_covguard").glob("*.py"):
        text = module.read_text()
        if module.name != "covcompat.py":
            touched |= {f"{module.name}: {name}" for name in PRIVATE if name in text}
            touched |= {f"{module.name}: {found}" for found in SUBMODULE.findall(text)}
    assert touched == set()
