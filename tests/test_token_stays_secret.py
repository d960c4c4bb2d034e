"""The token never appears in what the project writes or prints.

A whole session against a real server, wrong credentials included: the control routes,
a snapshot, the dashboard and its HTML report, ``covguard collect``, ``report``,
``shutdown``. Then the token is searched for in every answer, in the server's output
(werkzeug logs each request line), in the commands' output and in every file left behind:
data files, snapshots, the collected file, the HTML report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from live import BIN, DASHBOARD, FLASK_EXAMPLE, TOKEN, CovguardServe

#: What these check is the door's and the server's, the same on every core: one Python.
pytestmark = pytest.mark.core_independent

BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = ("anyone", DASHBOARD)


def test_the_token_is_in_no_answer_output_or_file(tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    live = CovguardServe(["wsgi:application", "--server", "werkzeug", "--contexts"], cwd=folder)
    answers: list[requests.Response] = []
    outputs: list[str] = []
    try:
        url = f"{live.url}/__coverage__"
        answers += [
            live.get("/"),
            requests.post(live.url + "/__shutdown__", headers={"Authorization": "Bearer nope" * 3},
                          timeout=10),
            requests.get(f"{url}/summary", auth=("anyone", "wrong-token-0123456789"), timeout=10),
            requests.post(f"{url}/context", data="login tests", headers=BEARER, timeout=30),
            live.get("/api/tasks"),
            requests.post(f"{url}/snapshot", data="after the api", headers=BEARER, timeout=30),
            requests.get(f"{url}/status", headers=BEARER, timeout=30),
            requests.get(f"{url}/summary", auth=BASIC, timeout=60),
            requests.get(f"{url}/", auth=BASIC, timeout=30),
            requests.get(f"{url}/html/", auth=BASIC, timeout=60),
            requests.get(f"{url}/snapshots", auth=BASIC, timeout=30),
        ]  # fmt: skip
        assert [answer.status_code for answer in answers] == [
            200, 403, 403, 200, 200, 200, 200, 200, 200, 200, 200
        ]  # fmt: skip
        env = {**os.environ, "COVGUARD_TOKEN": TOKEN}
        for command in (
            ["collect", live.url],
            ["report", live.url, "--html", str(tmp_path / "report-html")],
            ["shutdown", live.url],
        ):
            done = subprocess.run(
                [str(BIN / "covguard"), *command], cwd=folder, env=env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            outputs += [done.stdout, done.stderr]
        assert live.wait(timeout=15) == 0
    finally:
        live.stop()
    outputs += [live.stderr, live.ready_line]
    assert "POST /__coverage__/context" in live.stderr, "werkzeug logged the requests"

    for answer in answers:
        assert TOKEN not in answer.text
        assert TOKEN not in str(answer.headers)
    for output in outputs:
        assert TOKEN not in output
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(".coverage-snapshot-" in path.name for path in written)
    assert any(path.name.endswith(".collected") for path in written)
    assert any(path.name == "index.html" for path in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
