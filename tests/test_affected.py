"""Run only the affected end-to-end tests: the proof on the Flask example, in Chromium.

A copy of the example in a git repository of its own, with one more browser test that
reads the JSON API too (so that a helper is shared by exactly two tests), records its
impact map with ``pytest --covguard-contexts``. Each change below is then made to break
something on purpose, and the whole suite is run on the changed code: every test that
fails there must be among those ``covguard affected`` selected (the truth), and the
selection is the one the rules promise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from live import FLASK_EXAMPLE, PYTEST, ROOT, tree_once_per_run

pytestmark = pytest.mark.core_independent

PY = sys.executable
BROWSER = "tests/test_taskboard_browser.py::"
MARKING = f"{BROWSER}test_marking_a_task_done_moves_it_down_the_list[chromium]"
JSON_API = f"{BROWSER}test_the_json_api_lists_what_was_added[chromium]"
JSON_AGAIN = "tests/test_api_again.py::test_the_api_shows_a_task_as_json[chromium]"
NOT_FOUND = f"{BROWSER}test_an_unknown_task_is_a_friendly_404[chromium]"
API_AGAIN = """\
from playwright.sync_api import Page


def test_the_api_shows_a_task_as_json(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Seen as JSON")
    page.get_by_role("button", name="Add").click()
    titles = [task["title"] for task in page.request.get("/api/tasks").json()]
    assert "Seen as JSON" in titles
"""

#: Appended to the copy's conftest.py: in the runs on broken code, an action on a page the
#: change broke fails in 5 s (expect's own default), not Playwright's 30; the recording keeps
#: the defaults (a busy machine took more than 1.5 s for a click).
FAIL_FAST = """
import os

import pytest


@pytest.fixture(autouse=True)
def _fail_fast(page):
    if os.environ.get("FAIL_FAST_MS"):
        page.set_default_timeout(int(os.environ["FAIL_FAST_MS"]))
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def run_suite(root: Path, *args: str, broken: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAIL_FAST_MS": "5000"} if broken else None
    return subprocess.run(
        [*PYTEST, "-rf", *args], cwd=root, capture_output=True, text=True, timeout=300, env=env
    )


def failed(done: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE))


def affected(root: Path) -> tuple[int, set[str], str]:
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "affected"], cwd=root, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    return done.returncode, set(done.stdout.split()), done.stderr


def recorded_copy(example: Path, root: Path, tests: int, extra: dict[str, str]) -> None:
    """A copy of ``example`` at ``root`` (with ``extra`` files), in git, its map recorded
    by a browser run with per-test contexts: ``tests`` tests."""
    shutil.copytree(
        example,
        root,
        ignore=shutil.ignore_patterns(".coverage", ".coverage.*", ".covguard*", "__pycache__"),
    )
    for name, text in extra.items():
        (root / name).write_text(text)
    with (root / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(FAIL_FAST)
    (root / ".gitignore").write_text(".coverage*\n.covguard*\n__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "the example")
    done = run_suite(root, "--covguard-contexts")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"covguard: impact map of {tests} tests in" in done.stdout


def record(folder: Path) -> None:
    """The Flask example, with one more test, in git at ``folder``, its map recorded."""
    root = folder / "taskboard"
    recorded_copy(FLASK_EXAMPLE, root, 7, {"tests/test_api_again.py": API_AGAIN})
    the_map = json.loads((root / ".covguard-impact.json").read_text())
    assert the_map["commit"] == git(root, "rev-parse", "HEAD").strip()
    templates = {f"taskboard/templates/{name}": name
                 for name in ("base.html", "error.html", "index.html", "task.html")}  # fmt: skip
    assert sorted(the_map["blobs"]) == sorted(["taskboard/__init__.py", "taskboard/store.py",
                                               *templates])  # fmt: skip
    assert the_map["template_names"] == templates
    assert the_map["templates"][NOT_FOUND] == ["base.html", "error.html"]
    assert the_map["templates_unknown"] is None
    # The same map from the data files alone, as for CI shards combined elsewhere.
    data = [str(file) for file in root.glob(".coverage.*")]
    again = subprocess.run(
        [PY, "-m", "wsgi_covguard", "map", *data, "--output", str(root / ".covguard-again.json")],
        cwd=root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    mapped_again = json.loads((root / ".covguard-again.json").read_text())
    assert mapped_again["tests"] == the_map["tests"]
    assert mapped_again["templates"] == the_map["templates"]  # the servers' notes, paired
    for file in data:  # their paths are this folder's, not a copy's: the map is what is kept
        os.remove(file)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this worker's own of the example recorded once for the whole run (the map
    holds paths relative to the repository, so a copy is as good as the original)."""
    return tree_once_per_run(tmp_path_factory, "affected", record) / "taskboard"


@pytest.fixture
def example(recorded: Path) -> Path:
    """The recorded example, its work tree as committed (the map kept)."""
    git(recorded, "checkout", "-q", ".")
    git(recorded, "clean", "-qfd", "--exclude=.covguard-impact.json")
    return recorded


def change(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, path
    path.write_text(text.replace(old, new, 1))


def test_no_change_selects_none(example: Path) -> None:
    status, chosen, said = affected(example)
    assert (status, chosen) == (0, set())
    assert said.startswith("covguard: 0 of 7 end-to-end tests can be affected by the change;")


#: A change that breaks something, and what it must select: a view one test reaches, a
#: helper two tests share, a module-level line (run at import), a template.
BREAKS = {
    "a view one test reaches": (
        "taskboard/__init__.py", 'return redirect(url_for("index"))',
        'return redirect(url_for("show_task", task_id=task_id))', {MARKING},
    ),
    "a helper two tests share": (
        "taskboard/store.py", "return asdict(self)",
        'return {**asdict(self), "title": self.title.upper()}', {JSON_API, JSON_AGAIN},
    ),
    "a module-level line": ("taskboard/store.py", "MAX_TITLE = 80", "MAX_TITLE = 5", None),
    # ...and the suite's first test: Chromium's first page also asks for /favicon.ico, a 404
    # page rendered with error.html.
    "a template two tests render": (
        "taskboard/templates/error.html", 'id="message"', 'id="reason"', {NOT_FOUND, JSON_AGAIN},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BREAKS))
def test_every_test_the_change_breaks_is_selected_and_no_more(example: Path, case: str) -> None:
    path, old, new, expected = BREAKS[case]
    change(example / path, old, new)
    status, chosen, said = affected(example)
    truth = failed(run_suite(example, broken=True))  # the whole suite, on the changed code
    assert truth, "the change breaks something"
    if expected is None:  # every test runs: exit 3, and every test the map knows listed
        assert (status, len(chosen)) == (3, 7), said
        assert "changed outside any function" in said
    else:
        assert (status, chosen) == (0, expected), said
    assert truth <= chosen, f"a test the change broke was not selected: {truth - chosen}"


def test_pytest_runs_only_the_affected_tests_and_says_why(example: Path) -> None:
    path, old, new, _ = BREAKS["a view one test reaches"]
    change(example / path, old, new)
    done = run_suite(example, "--covguard-affected", "-v", broken=True)
    assert done.returncode == 1, done.stdout
    assert failed(done) == {MARKING}
    assert (
        "covguard: 1 of 7 end-to-end tests can be affected by the change; 6 not run (map from "
        in done.stdout
    )
    assert re.search(
        r"test_marking_a_task_done_moves_it_down_the_list\[chromium\]: taskboard/__init__.py:\d+"
        r" changed, in complete_task\(\); the test ran complete_task\(\)",
        done.stdout,
    ), done.stdout
    assert "1 failed, 6 deselected" in done.stdout


def test_a_template_every_page_extends_selects_the_tests_that_rendered_a_page(
    example: Path,
) -> None:
    change(example / "taskboard" / "templates" / "base.html", "<main>", "<main class=wide>")
    status, chosen, said = affected(example)
    assert (status, len(chosen)) == (0, 7), said  # every test opens a page
    done = run_suite(example, "--covguard-affected", "-v", "--collect-only")
    assert f"{NOT_FOUND}: taskboard/templates/base.html (changed): the test rendered base.html" in (
        done.stdout
    )


def test_a_new_test_file_selects_its_own_tests(example: Path) -> None:
    (example / "tests" / "test_more.py").write_text(API_AGAIN.replace("as_json", "again"))
    done = run_suite(example, "--covguard-affected", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tests/test_more.py::test_the_api_shows_a_task_again[chromium]" in done.stdout
    assert "covguard: 1 of 8 end-to-end tests can be affected by the change; 7 not run" in (
        done.stdout
    )


def test_under_xdist_the_workers_choose_and_the_line_is_said(example: Path) -> None:
    done = run_suite(example, "--covguard-affected", "-n", "2")
    assert done.returncode == 5, done.stdout  # pytest's "no tests ran": none can be affected
    assert "covguard: 0 of 7 end-to-end tests can be affected by the change; 7 not run" in (
        done.stdout
    )


def test_covguard_run_with_contexts_records_the_same_map(example: Path) -> None:
    before = json.loads((example / ".covguard-impact.json").read_text())
    notes_before = set(example.glob(".covguard-templates.*"))
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "run", "wsgi:application", "--contexts", "--",
         *PYTEST, "--covguard-contexts", "tests"],
        cwd=example, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "covguard: impact map of 7 tests in" in done.stdout
    # The servers' notes of templates go with the data files combined.
    assert set(example.glob(".covguard-templates.*")) <= notes_before
    after = json.loads((example / ".covguard-impact.json").read_text())
    assert after["tests"] == before["tests"]
    assert after["templates"] == before["templates"]
    assert after["templates_unknown"] is None
    assert after["commit"] == before["commit"]


DJANGO_EXAMPLE = ROOT / "examples" / "django"
RECIPES = "tests/test_recipes_browser.py::"
ADDING = f"{RECIPES}test_adding_a_recipe_follows_the_redirect_to_it[chromium]"
LISTING = f"{RECIPES}test_the_json_api_lists_the_recipes[chromium]"


def record_django(folder: Path) -> None:
    """The Django example in git at ``folder``, its map recorded as the Flask one's."""
    recorded_copy(DJANGO_EXAMPLE, folder / "recipes", 4, {})


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tree_once_per_run(tmp_path_factory, "affected-django", record_django) / "recipes"


def test_a_django_template_selects_the_tests_that_rendered_it(recipes: Path) -> None:
    """Django's templates, as Django's own test instrumentation sees them: a page's
    template selects the two tests that were redirected to a recipe's page, of four."""
    the_map = json.loads((recipes / ".covguard-impact.json").read_text())
    assert the_map["templates_unknown"] is None
    assert the_map["template_roots"] == ["recipes/templates"]
    assert the_map["template_names"]["recipes/templates/recipes/recipe.html"] == (
        "recipes/recipe.html"
    )
    change(recipes / "recipes" / "templates" / "recipes" / "recipe.html", 'id="minutes"',
           'id="ready-in"')  # fmt: skip
    status, chosen, said = affected(recipes)
    truth = failed(run_suite(recipes, broken=True))
    assert (status, chosen) == (0, {ADDING, LISTING}), said
    assert truth == {ADDING}  # the one that reads #minutes
