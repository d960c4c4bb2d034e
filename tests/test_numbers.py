"""Every number the project shows equals ``coverage report``'s on the same data and settings.

The live summary (the dashboard's numbers) is compared, file by file and in total, with
``coverage report`` run on the data the same server hands out, under the same configuration:
statements and branch coverage, exclusions, report omissions, precision.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from live import DASHBOARD, FLASK_EXAMPLE, TOKEN, CovguardServe

from wsgi_covguard.parsing import HELPED_FROM

BASIC = ("anyone", DASHBOARD)
BEARER = {"Authorization": f"Bearer {TOKEN}"}

STATEMENTS = """\
[run]
source_pkgs = taskboard
"""
BRANCHES = """\
[run]
source_pkgs = taskboard
branch = true
[report]
precision = 2
exclude_also =
    raise ValidationError
partial_branches =
    if not tasks.complete
omit = */taskboard/nothing.py
"""
# Enough files for the first report to be parsed in helper processes (wsgi_covguard.parsing),
# none of them run by the control routes (werkzeug is: the summary would see more than the data).
MANY_FILES = """\
[run]
source_pkgs = taskboard, flask, jinja2, click, itsdangerous, markupsafe, blinker
branch = true
"""


def coverage_report(folder: Path, data_file: Path) -> dict[str, list[str]]:
    """``coverage report``'s rows: file name (or TOTAL) -> its columns after the name."""
    done = subprocess.run(
        [sys.executable, "-m", "coverage", "report", f"--data-file={data_file}"],
        cwd=folder, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    rows = {}
    for line in done.stdout.splitlines():
        if line.startswith(("Name", "---")) or not line.strip():
            continue
        name, *columns = line.split()
        rows[name] = columns
    return rows


@pytest.mark.parametrize(
    "rc", [STATEMENTS, BRANCHES, MANY_FILES], ids=["statements", "branches", "many-files"]
)
def test_the_summary_equals_coverage_report_file_by_file(rc: str, tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / ".coveragerc").write_text(rc)
    # Never imported: `coverage report` lists it at 0%, from what a save adds.
    (folder / "taskboard" / "unused.py").write_text("def never():\n    return 1\n")
    live = CovguardServe(["wsgi:application"], cwd=folder)
    try:
        assert live.get("/").status_code == 200
        assert requests.post(live.url + "/tasks", data={"title": ""}, timeout=10).status_code == 400
        requests.post(live.url + "/tasks", data={"title": "Count me"}, timeout=10)
        assert live.get("/tasks/999").status_code == 404
        summary = requests.get(f"{live.url}/__coverage__/summary", auth=BASIC, timeout=60).json()
        data = requests.get(f"{live.url}/__coverage__/data", headers=BEARER, timeout=60)
        assert data.status_code == 200
    finally:
        live.stop()
    data_file = tmp_path / "served.coverage"
    data_file.write_bytes(data.content)
    report = coverage_report(folder, data_file)

    branches = "branch = true" in rc
    shown = {
        entry["file"]: [str(entry["statements"]), str(entry["missing"])]
        + ([str(entry["branches"]), str(entry["partial"])] if branches else [])
        + [entry["shown"] + "%"]
        for entry in summary["files"]
    }
    total = report.pop("TOTAL")
    assert "taskboard/unused.py" in report
    if rc is MANY_FILES:
        assert len(report) >= HELPED_FROM
    assert shown == report
    assert summary["shown"] + "%" == total[-1]
    assert [summary["statements"], summary["missing"]] == [int(n) for n in total[:2]]
    if rc is BRANCHES:
        assert re.fullmatch(r"\d+\.\d\d%", total[-1]), "precision 2, as configured"
    if branches:
        assert [summary["branches"], summary["partial"]] == [int(n) for n in total[2:4]]
        assert summary["partial"] > 0, "the workload leaves partial branches to count"
