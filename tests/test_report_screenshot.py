"""The picture in the README: coverage.py's HTML report with per-test contexts, in Chromium.

Each run takes the screenshot into a temporary folder; ``make screenshot`` (which
sets COVGUARD_UPDATE_DOCS=1) writes it to docs/, where the README shows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from live import CHROMIUM, CHROMIUM_FLAGS, PYTEST, ROOT
from playwright.sync_api import sync_playwright

PY = sys.executable

pytestmark = pytest.mark.core_independent


def test_the_html_report_shows_which_browser_test_ran_each_line(tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(
        ROOT / "examples" / "flask", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    tests = subprocess.run(
        [*PYTEST, "-q", "--covguard-contexts", "tests"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for command in (["combine"], ["html", "--show-contexts", "-d", "html"]):
        subprocess.run(
            [PY, "-m", "coverage", *command], cwd=folder, env=env, check=True, timeout=120
        )
    page_file = next((folder / "html").glob("*___init___py.html"))
    assert "tests/test_taskboard_browser.py::test_adding_a_task_follows_the_redirect_to_it" in (
        page_file.read_text()
    )

    shot = tmp_path / "report-contexts.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(page_file.as_uri())
        source = (folder / "taskboard" / "__init__.py").read_text().splitlines()
        redirect = (
            source.index('        return redirect(url_for("show_task", task_id=task.id))') + 1
        )
        line = page.locator("p", has=page.locator(f"#t{redirect}"))
        line.locator("label.ctx").click()
        shown = line.locator(".ctxs")
        assert "test_adding_a_task_follows_the_redirect_to_it" in shown.inner_text()
        line.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
        browser.close()
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 20_000
    if os.environ.get("COVGUARD_UPDATE_DOCS") == "1":
        shutil.copy(shot, ROOT / "docs" / "report-contexts.png")
