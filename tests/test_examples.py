"""The examples as a user runs them: under ``covguard run``, and on their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from live import PYTEST, ROOT, data_files, measured_lines

PY = sys.executable

pytestmark = pytest.mark.core_independent
#: example -> (its folder, its package, its entry point); Django's project has both doors
EXAMPLES = {
    "flask": ("flask", "taskboard", "wsgi:application"),
    "bottle": ("bottle", "guestbook", "wsgi:application"),
    "pyramid": ("pyramid", "bookshelf", "wsgi:application"),
    "falcon": ("falcon", "notebook", "wsgi:application"),
    "django": ("django", "recipes", "wsgi:application"),
    "django-asgi": ("django", "recipes", "asgi:application"),
    "fastapi": ("fastapi", "shortlinks", "asgi:app"),
}


@pytest.fixture(params=list(EXAMPLES))
def example(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, str]:
    name, package, entry = EXAMPLES[str(request.param)]
    folder = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder, package, entry


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}


def test_under_covguard_run_the_tests_pass_and_the_report_names_the_app(
    example: tuple[Path, str, str],
) -> None:
    folder, package, entry = example
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "run", entry, "--html", "htmlcov", "--",
         *PYTEST, "-q", "tests"],
        cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    assert f"{package}/" in done.stdout
    assert (folder / "htmlcov" / "index.html").exists()


def test_on_their_own_the_tests_start_and_stop_the_server(
    example: tuple[Path, str, str],
) -> None:
    folder, package, entry = example
    done = subprocess.run(
        [*PYTEST, "-q", "--covguard-app", entry, "tests"],
        cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(data_files(folder)) == 1, "the server saved its data when the tests stopped it"
    lines = measured_lines(folder, package)
    assert sum(len(found) for found in lines.values()) > 20


def test_without_a_browser_the_tests_fail_saying_what_to_install(tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(
        ROOT / "examples" / "flask", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {
        **clean_env(),
        "CHROMIUM": str(tmp_path / "no-chromium-here"),
        "PATH": str(Path(PY).parent),
    }
    done = subprocess.run(
        [*PYTEST, "-q", "tests"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode != 0
    assert "skipped" not in done.stdout
    missing = tmp_path / "no-chromium-here"
    assert (
        f"no Chromium at {missing}: apt-get install chromium, or set CHROMIUM=/path" in done.stdout
    )
