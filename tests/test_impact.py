"""The impact map's rules, in-process, on a real git repository and real coverage data.

Each test builds a small project in git (an app module, a test file), records a map from
coverage data whose contexts are pytest's labels (``<node id>|run``), changes the work
tree, and checks which tests :func:`wsgi_covguard.impact.select` keeps, and why. The
browser-driven proof on the Flask example is in ``tests/test_affected.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from wsgi_covguard import impact
from wsgi_covguard.templates import Rendered

pytestmark = pytest.mark.in_process

APP = """\
import helpers


def show():
    total = helpers.shared()
    return total


def add(x):
    value = x + 1
    return value


def registered(f):
    REGISTRY.append(f)
    return f


REGISTRY = []


@registered
class Board:
    limit = 3

    def count(self):
        return helpers.shared() + self.limit
"""
HELPERS = """\
def shared():
    return 41
"""
#: Which lines of APP and HELPERS each test ran (start-up: the module-level lines).
RAN = {
    "tests/test_e2e.py::test_show": {"app.py": [5, 6], "helpers.py": [2]},
    "tests/test_e2e.py::test_add": {"app.py": [10, 11]},
    "tests/test_e2e.py::test_count": {"app.py": [27], "helpers.py": [2]},
}
STARTUP = {"app.py": [1, 4, 9, 14, 15, 16, 19, 22, 23, 24, 26], "helpers.py": [1]}
ALL = set(RAN)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "helpers.py").write_text(HELPERS)
    (root / "tests" / "test_e2e.py").write_text("def test_show(): pass\n")
    (root / "tests" / "conftest.py").write_text("")
    (root / "templates").mkdir()
    (root / "templates" / "index.html").write_text("<p>{{ total }}</p>\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    MAPS[root] = recorded(root)  # at the commit, before any test changes the work tree
    return root


#: Each project's map, recorded at its first commit.
MAPS: dict[Path, impact.ImpactMap] = {}


def recorded(root: Path) -> impact.ImpactMap:
    data = CoverageData(no_disk=True)
    data.set_context("")
    data.add_lines({str(root / path): lines for path, lines in STARTUP.items()})
    for test, files in RAN.items():
        for phase in ("setup", "run", "teardown"):
            data.set_context(f"{test}|{phase}")
            if phase == "run":
                data.add_lines({str(root / path): lines for path, lines in files.items()})
    try:
        return impact.record(data, root, test_root=root)
    finally:
        data.close(force=True)  # in memory: an unclosed database is a ResourceWarning (3.13)


def chosen(root: Path, ignore: tuple[str, ...] = ()) -> set[str] | str:
    """The tests selected, or the reason every test runs."""
    selection = impact.select(MAPS[root], root, ignore=ignore)
    if selection.everything is not None:
        return f"all: {selection.everything}"
    return {test for test in ALL if selection.why(test, known=True) is not None}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_map_holds_each_tests_lines_the_start_up_lines_the_commit_and_the_contents(
    project: Path, tmp_path: Path
) -> None:
    made = recorded(project)
    assert made.tests == RAN
    assert made.startup == STARTUP
    assert made.commit == git(project, "rev-parse", "HEAD").strip()
    assert made.blobs["app.py"] == git(project, "hash-object", "app.py").strip()
    made.write(tmp_path / impact.MAP_NAME)
    assert impact.read(tmp_path / impact.MAP_NAME) == made


def test_no_change_selects_no_test(project: Path) -> None:
    assert chosen(project) == set()


def test_a_line_in_a_function_selects_the_tests_that_ran_that_function(project: Path) -> None:
    edit(project / "app.py", "value = x + 1", "value = x + 2")
    assert chosen(project) == {"tests/test_e2e.py::test_add"}


def test_lines_inserted_or_deleted_in_a_function_count_as_the_function(project: Path) -> None:
    edit(project / "app.py", "    total = helpers.shared()\n", "")
    assert chosen(project) == {"tests/test_e2e.py::test_show"}
    git(project, "checkout", "-q", "app.py")
    edit(project / "app.py", "    value = x + 1\n", "    value = x + 1\n    value *= 2\n")
    assert chosen(project) == {"tests/test_e2e.py::test_add"}


def test_a_helper_two_tests_share_selects_both(project: Path) -> None:
    edit(project / "helpers.py", "return 41", "return 42")
    assert chosen(project) == {"tests/test_e2e.py::test_show", "tests/test_e2e.py::test_count"}


def test_a_method_is_a_function_and_a_class_body_is_module_level(project: Path) -> None:
    edit(project / "app.py", "return helpers.shared() + self.limit", "return self.limit")
    assert chosen(project) == {"tests/test_e2e.py::test_count"}
    git(project, "checkout", "-q", "app.py")
    edit(project / "app.py", "limit = 3", "limit = 4")
    assert str(chosen(project)).startswith("all: app.py:24 changed outside any function")


@pytest.mark.parametrize(
    ("old", "new"),
    [("import helpers", "import helpers, os"), ("def add(x):", "def add(x, y=1):")],
    ids=["module level", "a def line"],
)
def test_a_line_run_at_import_selects_every_test(project: Path, old: str, new: str) -> None:
    edit(project / "app.py", old, new)
    assert str(chosen(project)).startswith("all: app.py:")


def test_a_file_the_map_does_not_measure_selects_every_test_unless_ignored(
    project: Path,
) -> None:
    edit(project / "templates" / "index.html", "<p>", "<p class=total>")
    assert str(chosen(project)).startswith("all: templates/index.html changed and the map")
    assert chosen(project, ignore=("templates/*",)) == set()


def test_an_untracked_file_counts_as_a_change(project: Path) -> None:
    (project / "settings.py").write_text("DEBUG = True\n")
    assert str(chosen(project)).startswith("all: settings.py changed")


def test_a_test_file_selects_its_tests_and_a_conftest_the_tests_under_its_folder(
    project: Path,
) -> None:
    (project / "tests" / "test_e2e.py").write_text("def test_show(): assert True\n")
    assert chosen(project) == ALL  # every test of the map is in that file
    git(project, "checkout", "-q", ".")
    (project / "tests" / "conftest.py").write_text("import pytest\n")
    selection = impact.select(MAPS[project], project)
    assert selection.why("tests/test_e2e.py::test_add", known=True) == [
        "tests/conftest.py changed: a helper of the tests under tests/"
    ]
    assert selection.why("elsewhere/test_x.py::test_y", known=True) is None


def test_a_test_not_in_the_map_always_runs(project: Path) -> None:
    selection = impact.select(MAPS[project], project)
    assert selection.why("tests/test_e2e.py::test_new", known=False) == [
        "not in the impact map (new or renamed)"
    ]


def test_a_stale_map_selects_every_test_that_ran_the_file(project: Path) -> None:
    made = MAPS[project]
    edit(project / "helpers.py", "return 41", "return 42")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "two")
    # helpers.py imported by the first request that needed it, not at start-up:
    lazily = {"app.py": STARTUP["app.py"], "helpers.py": []}
    stale = impact.ImpactMap(**{**made.__dict__, "commit": None, "startup": lazily})
    selection = impact.select(stale, project, ref="HEAD")
    assert {test for test in ALL if selection.why(test, known=True)} == {
        "tests/test_e2e.py::test_show", "tests/test_e2e.py::test_count",
    }  # fmt: skip
    assert "stale map" in selection.chosen["tests/test_e2e.py::test_show"][0]


def test_a_stale_file_that_ran_at_start_up_selects_every_test(project: Path) -> None:
    """Its module level, run at import, may be what differs: a constant a function of
    another file reads reaches tests that never ran a line of it."""
    edit(project / "helpers.py", "return 41", "return 42")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "two")
    stale = impact.ImpactMap(**{**MAPS[project].__dict__, "commit": None})
    selection = impact.select(stale, project, ref="HEAD")
    assert selection.everything == (
        "helpers.py is not what the map measured (stale map), and it ran at start-up"
    )


def test_the_tests_whose_requests_crossed_a_switch_always_run(project: Path) -> None:
    data = CoverageData(no_disk=True)
    unsure = impact.record(data, project, unsure=["tests/test_e2e.py::test_add|run"])
    data.close(force=True)
    assert unsure.unsure == {"tests/test_e2e.py::test_add"}
    made = impact.ImpactMap(**{**MAPS[project].__dict__, "unsure": unsure.unsure})
    selection = impact.select(made, project)
    assert selection.why("tests/test_e2e.py::test_add", known=True)
    assert selection.why("tests/test_e2e.py::test_show", known=True) is None


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "no impact map at"),
        ("{", "cannot be read"),
        ('{"format": 2}', "is damaged"),
        ('{"format": 1}', "is not a format-2 map; record it again"),
    ],
    ids=["missing", "corrupt", "damaged", "an older release's"],
)
def test_a_missing_or_corrupt_map_is_one_clear_error(
    tmp_path: Path, content: str | None, said: str
) -> None:
    path = tmp_path / impact.MAP_NAME
    if content is not None:
        path.write_text(content)
    with pytest.raises(impact.ImpactError, match=said):
        impact.read(path)


def test_an_unknown_ref_selects_every_test_saying_why(project: Path) -> None:
    selection = impact.select(MAPS[project], project, ref="no-such-ref")
    assert selection.everything is not None
    assert "git rev-parse failed" in selection.everything


def test_a_partial_run_extends_the_map_at_the_same_commit_and_replaces_it_otherwise(
    project: Path,
) -> None:
    whole = MAPS[project]
    part = impact.ImpactMap(**{**whole.__dict__, "tests": {"tests/test_e2e.py::test_add": {}}})
    assert impact.merge(whole, part).tests == {**RAN, "tests/test_e2e.py::test_add": {}}
    elsewhere = impact.ImpactMap(**{**part.__dict__, "commit": "0" * 40})
    assert impact.merge(whole, elsewhere) == elsewhere


def test_a_helper_selects_the_tests_of_its_tests_folder_and_a_new_test_file_its_own(
    project: Path,
) -> None:
    (project / "tests" / "pages").mkdir()
    (project / "tests" / "pages" / "home.py").write_text("URL = '/'\n")
    selection = impact.select(MAPS[project], project)
    assert selection.everything is None
    assert selection.why("tests/test_e2e.py::test_add", known=True) == [
        "tests/pages/home.py changed: a helper of the tests under tests/"
    ]
    (project / "tests" / "pages" / "home.py").unlink()
    (project / "tests" / "test_new.py").write_text("def test_new(): pass\n")
    assert chosen(project) == set()  # the new file's tests are not in the map: they run


def test_coverage_data_and_the_map_are_never_a_change(project: Path) -> None:
    for name in (".coverage", ".coverage.host.1.abc", impact.MAP_NAME,
                 ".covguard-templates.host.pid1.json"):  # fmt: skip
        (project / name).write_text("written by a run\n")  # untracked, not ignored
    assert chosen(project) == set()


def test_a_function_that_ran_at_start_up_selects_every_test(project: Path) -> None:
    edit(project / "app.py", "    REGISTRY.append(f)\n", "    REGISTRY.insert(0, f)\n")
    assert chosen(project) == "all: app.py:15 changed, in registered(), which ran at start-up" + (
        " (before any test)"
    )


SHOW, ADD, COUNT = (f"tests/test_e2e.py::test_{name}" for name in ("show", "add", "count"))
#: Which templates each test had the server render (test_count: an installed app's, outside
#: the work tree), and the one loaded at start-up.
RENDERED = {SHOW: ["index.html", "base.html"], ADD: ["list.html", "base.html"],
            COUNT: ["admin/page.html"], "": ["startup.html"]}  # fmt: skip


def with_templates(root: Path, tmp_path: Path) -> impact.ImpactMap:
    """The project's map with the templates the servers noted: the project's own in
    ``templates/``, an installed package's outside the work tree."""
    installed = tmp_path / "site-packages" / "admin" / "templates"
    (installed / "admin").mkdir(parents=True)
    (installed / "admin" / "page.html").write_text("<main></main>\n")
    for name in ("base.html", "list.html", "unused.html", "startup.html"):
        (root / "templates" / name).write_text(f"<!-- {name} -->\n")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "pages")
    found = {name: (installed if name.startswith("admin/") else root / "templates")
             for names in RENDERED.values() for name in names}  # fmt: skip
    by_context = {
        f"{test}|run" if test else "": {str(found[name] / name): str(found[name]) for name in names}
        for test, names in RENDERED.items()
    }
    phases = ("setup", "run", "teardown")
    rendered = Rendered(by_context, {f"{test}|{phase}" for test in ALL for phase in phases})
    data = CoverageData(no_disk=True)
    data.set_context("")
    data.add_lines({str(root / path): lines for path, lines in STARTUP.items()})
    for test, files in RAN.items():
        data.set_context(f"{test}|run")
        data.add_lines({str(root / path): lines for path, lines in files.items()})
    try:
        return impact.record(data, root, test_root=root, rendered=rendered)
    finally:
        data.close(force=True)


def test_a_map_holds_the_templates_each_test_rendered(project: Path, tmp_path: Path) -> None:
    made = with_templates(project, tmp_path)
    assert made.templates == {test: sorted(names) for test, names in RENDERED.items() if test}
    assert made.template_startup == ["startup.html"]
    assert made.template_roots == ["templates"]  # the installed package's is no diff's
    assert made.template_names == {
        f"templates/{name}": name for name in ("index.html", "base.html", "list.html",
                                                "startup.html")
    }  # fmt: skip
    assert (
        made.blobs["templates/base.html"]
        == git(project, "hash-object", "templates/base.html").strip()
    )
    assert made.templates_unknown is None
    made.write(tmp_path / impact.MAP_NAME)
    assert impact.read(tmp_path / impact.MAP_NAME) == made


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: (t / "index.html").write_text("<p class=total>\n"), {SHOW}),
        (lambda t: (t / "base.html").write_text("<!doctype html>\n"), {SHOW, ADD}),
        (lambda t: (t / "list.html").unlink(), {ADD}),
        (lambda t: (t / "unused.html").write_text("<p>\n"), set()),
        (lambda t: (t / "new.html").write_text("<p>\n"), set()),
        # a project's template that shadows the installed one of that name:
        (
            lambda t: (t / "admin").mkdir() or (t / "admin" / "page.html").write_text("<p>\n"),
            {COUNT},
        ),
    ],
    ids=["rendered by one", "by two", "removed", "rendered by none", "new", "shadowing"],
)
def test_a_changed_template_selects_the_tests_that_rendered_it(
    project: Path, tmp_path: Path, change: Any, expected: set[str]
) -> None:
    made = with_templates(project, tmp_path)
    change(project / "templates")
    selection = impact.select(made, project)
    assert selection.everything is None
    assert {test for test in ALL if selection.why(test, known=True)} == expected


def test_a_template_loaded_at_start_up_or_not_known_per_test_selects_every_test(
    project: Path, tmp_path: Path
) -> None:
    made = with_templates(project, tmp_path)
    (project / "templates" / "startup.html").write_text("<p>\n")
    assert impact.select(made, project).everything == (
        "templates/startup.html changed, the template startup.html loaded at start-up"
    )
    git(project, "checkout", "-q", ".")
    (project / "templates" / "index.html").write_text("<p>\n")
    unknown = impact.ImpactMap(**{**made.__dict__, "templates_unknown": "lost (a reason)"})
    assert impact.select(unknown, project).everything == (
        "templates/index.html changed, a template, and the templates each test rendered are"
        " not known: lost (a reason)"
    )


def test_a_stale_template_selects_the_tests_that_rendered_it(project: Path, tmp_path: Path) -> None:
    made = with_templates(project, tmp_path)
    (project / "templates" / "list.html").write_text("<ul></ul>\n")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "ul")
    selection = impact.select(made, project, ref="HEAD")
    assert {test for test in ALL if selection.why(test, known=True)} == {ADD}
    assert selection.chosen[ADD] == ["templates/list.html (stale map): the test rendered list.html"]
