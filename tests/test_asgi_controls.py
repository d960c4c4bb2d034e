"""The live controls against ASGI servers: contexts and the pytest plugin, snapshots and the
dashboard's figures, ``covguard collect``. The same routes as under WSGI (one core), so these
check that each reaches the ASGI door and the asyncio app: what differs is the server and
the concurrency (requests overlap on one event loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from live import DASHBOARD, PYTEST, TOKEN, CovguardServe, data_files, read_data

PY = sys.executable
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = ("anyone", DASHBOARD)
NOTES = Path(__file__).parent / "apps" / "notesapi.py"
SOURCE = NOTES.read_text().splitlines()
HELLO_BODY = SOURCE.index('    return {"hello": "world"}') + 1
NOTE_BODY = SOURCE.index('    return {"number": number, "text": NOTES.get(number, "")}') + 1
NEVER = '    return {"never": "asked"}  # no test asks for it: whoever does adds this line'
NEVER_BODY = SOURCE.index(NEVER) + 1


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    (tmp_path / "notesapi.py").write_text(NOTES.read_text())
    (tmp_path / ".coveragerc").write_text("[run]\nsource = .\ninclude = notesapi.py\n")
    return tmp_path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "PYTEST_"))}


PHASES = """
import threading, time, urllib.request
import pytest


@pytest.fixture
def visitor(covguard_server):
    urllib.request.urlopen(covguard_server.url + "/hello").read()  # setting up, through the app
    yield
    urllib.request.urlopen(covguard_server.url + "/never").read()  # tearing down, likewise


def test_with_a_fixture(visitor, covguard_server):
    urllib.request.urlopen(covguard_server.url + "/notes/1").read()


def test_late(covguard_server):
    # A request the test does not wait for: on the event loop while the next test begins.
    fetch = lambda: urllib.request.urlopen(covguard_server.url + "/slow?seconds=2").read()
    threading.Thread(target=fetch, daemon=True).start()
    deadline = time.monotonic() + 10
    while covguard_server.control("/__coverage__/status")["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_after():
    time.sleep(2.5)
"""


def test_the_plugin_labels_each_phase_and_names_requests_across_a_switch(notes: Path) -> None:
    (notes / "test_phases.py").write_text(PHASES)
    done = subprocess.run(
        [*PYTEST, "--covguard-app", "notesapi:api",
         "--covguard-contexts", "test_phases.py"],
        cwd=notes, env=clean_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [server_data] = data_files(notes)
    with read_data(server_data) as data:
        [notesapi] = [name for name in data.measured_files() if name.endswith("notesapi.py")]
        by_line = data.contexts_by_lineno(notesapi)
    test = "test_phases.py::test_with_a_fixture"
    assert by_line[HELLO_BODY] == [f"{test}|setup"]
    assert by_line[NOTE_BODY] == [f"{test}|run"]
    assert by_line[NEVER_BODY] == [f"{test}|teardown"]
    summary = done.stdout[done.stdout.index("covguard: requests across a context switch") :]
    assert (
        "GET /slow began in 'test_phases.py::test_late|run',"
        " ended in 'test_phases.py::test_after|run'"
    ) in summary


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_snapshots_diff_and_the_dashboards_figures(server: str, notes: Path) -> None:
    live = CovguardServe(["notesapi:api", "--server", server], cwd=notes)
    try:
        url = f"{live.url}/__coverage__"
        live.get("/hello")
        first = requests.post(f"{url}/snapshot", data="hello", headers=BEARER, timeout=30)
        assert first.status_code == 200
        before = requests.get(f"{url}/summary", auth=BASIC, timeout=30).json()
        live.get("/notes/1")
        second = requests.post(f"{url}/snapshot", data="note", headers=BEARER, timeout=30)
        after = requests.get(f"{url}/summary", auth=BASIC, timeout=30).json()
        assert after["missing"] == before["missing"] - 1  # the note's one line
        assert [row["file"] for row in after["files"]] == ["notesapi.py"]
        names = [first.json()["snapshot"], second.json()["snapshot"]]
        diff = requests.get(
            f"{url}/diff", params={"from": names[0], "to": names[1]}, auth=BASIC, timeout=30
        ).json()
        [change] = diff["files"].values()
        assert change == {"gained": [NOTE_BODY], "lost": []}
        page = requests.get(f"{url}/", auth=BASIC, timeout=30)
        assert page.ok
        assert page.headers["content-type"].startswith("text/html")
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
    finally:
        live.stop()


def test_collect_from_uvicorn_and_hypercorn_equals_the_union(tmp_path: Path) -> None:
    folders = [tmp_path / name for name in ("one", "two", "collector")]
    for folder in folders:
        folder.mkdir()
        (folder / "notesapi.py").write_text(NOTES.read_text())
        (folder / ".coveragerc").write_text("[run]\nsource = .\ninclude = notesapi.py\n")
    one = CovguardServe(["notesapi:api", "--server", "uvicorn"], cwd=folders[0])
    two = CovguardServe(["notesapi:api", "--server", "hypercorn"], cwd=folders[1])
    try:
        one.get("/hello")
        two.get("/notes/1")
        done = subprocess.run(
            [PY, "-m", "wsgi_covguard", "collect", one.url, two.url],
            cwd=folders[2], env={**os.environ, "COVGUARD_TOKEN": TOKEN},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        one.stop()
        two.stop()
    combined = subprocess.run(
        [PY, "-m", "coverage", "combine"], cwd=folders[2], capture_output=True, text=True
    )
    assert combined.returncode == 0, combined.stderr
    with read_data(folders[2] / ".coverage") as data:
        files = data.measured_files()  # each server's own copy of notesapi.py
        assert len(files) == 2
        lines = {line for name in files for line in data.lines(name) or ()}
    assert {HELLO_BODY, NOTE_BODY} <= lines
    assert NEVER_BODY not in lines
