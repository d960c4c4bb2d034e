"""Live control: save, reset, context, status and data routes; collect; under gunicorn too."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import coverage
import httpbin.core
import pytest
import requests
from live import (
    BIN,
    HTTPBIN_COVERAGERC,
    HTTPBIN_ENTRY,
    TOKEN,
    CovguardServe,
    RunningServer,
    children,
    data_files,
    drive_httpbin,
    free_port,
    measured_lines,
    read_data,
)

from wsgi_covguard.workers import _run_dir

PY = sys.executable
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CORE_PY = Path(httpbin.core.__file__).read_text().splitlines()


def line_of(text: str) -> int:
    return CORE_PY.index(text) + 1


# Lines inside view functions: run by requests, never at import time.
GET_BODY = line_of('    return jsonify(get_dict("url", "args", "headers", "origin"))')
STATUS_BODY = line_of("        return status_code(code)")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".coveragerc").write_text(HTTPBIN_COVERAGERC)
    return tmp_path


def control(
    live: CovguardServe | RunningServer, method: str, route: str, **kwargs: object
) -> requests.Response:
    headers = {**BEARER, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return requests.request(
        method, f"{live.url}/__coverage__/{route}", headers=headers, timeout=30, **kwargs
    )  # type: ignore[arg-type]


def saved_lines(folder: Path) -> set[int]:
    return measured_lines(folder, "httpbin").get("httpbin/core.py", set())


def test_save_writes_while_serving_and_status_says_what_runs(project: Path) -> None:
    live = CovguardServe(["httpbin:app"], cwd=project)
    try:
        assert live.get("/get").status_code == 200
        assert data_files(project) == []
        saved = control(live, "POST", "save")
        assert saved.status_code == 200
        assert saved.json()["saved"] == [live.pid]
        assert GET_BODY in saved_lines(project), "the lines are on disk"
        assert live.get("/get").status_code == 200, "and the server goes on"

        status = control(live, "GET", "status").json()
        assert status["pid"] == live.pid
        assert status["core"] == ("sysmon" if sys.version_info >= (3, 12) else "ctrace")
        assert status["measuring"] is True
        assert status["data_file"] == str(project / ".coverage")
        assert status["context"] is None
        assert status["workers"] == 1
        # The last answer may reach us before the server has closed its iterable.
        deadline = time.monotonic() + 5
        while status["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
            status = control(live, "GET", "status").json()
        assert status["in_flight"] == 0
    finally:
        live.stop()


@pytest.mark.parametrize("branch", [False, True], ids=["statements", "branches"])
def test_reset_discards_what_was_measured_before(branch: bool, project: Path) -> None:
    if branch:  # coverage.py's erase() once left branch data unreadable after a reset
        (project / ".coveragerc").write_text(HTTPBIN_COVERAGERC + "branch = true\n")
    live = CovguardServe(["httpbin:app"], cwd=project)
    try:
        live.get("/get")
        control(live, "POST", "save")
        assert control(live, "POST", "reset").status_code == 200
        assert data_files(project) == [], "the saved file is gone too"
        assert live.get("/status/418").status_code == 418
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
        lines = saved_lines(project)
        assert GET_BODY not in lines
        assert STATUS_BODY in lines, "measuring went on after the reset"
    finally:
        live.stop()


# Run at import time: the route's decorator.
GET_ROUTE = line_of('@app.route("/get", methods=("GET",))')


@pytest.mark.parametrize(
    ("args", "rc"),
    [
        pytest.param([], HTTPBIN_COVERAGERC, id="default-core"),
        pytest.param(["--contexts"], HTTPBIN_COVERAGERC, id="contexts"),
        pytest.param(["--contexts"], HTTPBIN_COVERAGERC + "core = ctrace\n", id="ctrace-contexts"),
        pytest.param([], HTTPBIN_COVERAGERC + "branch = true\n", id="branches"),
    ],
)
def test_a_reset_to_start_keeps_what_start_up_ran(args: list[str], rc: str, project: Path) -> None:
    (project / ".coveragerc").write_text(rc)
    live = CovguardServe(["httpbin:app", *args], cwd=project)
    try:
        assert live.get("/get").status_code == 200
        assert control(live, "POST", "save").status_code == 200
        assert {GET_ROUTE, GET_BODY} <= saved_lines(project)
        reset = control(live, "POST", "reset", params={"to": "start"})
        assert reset.status_code == 200
        assert reset.json()["to"] == "start"
        assert control(live, "POST", "save").status_code == 200
        lines = saved_lines(project)
        assert GET_ROUTE in lines, "import-time lines are kept"
        assert GET_BODY not in lines, "request lines are dropped"
        assert live.get("/status/418").status_code == 418
        assert control(live, "POST", "save").status_code == 200
        assert STATUS_BODY in saved_lines(project), "measuring goes on"
        assert control(live, "POST", "reset", params={"to": "end"}).status_code == 400
        assert control(live, "POST", "reset").status_code == 200
        assert data_files(project) == [], "a plain reset still forgets everything"
    finally:
        live.stop()


def test_a_context_labels_the_lines_run_after_it(project: Path) -> None:
    live = CovguardServe(["httpbin:app", "--contexts"], cwd=project)
    try:
        assert (
            control(live, "POST", "context", data="checkout tests").json()["context"]
            == "checkout tests"
        )
        live.get("/get")
        as_json = control(live, "POST", "context", json={"context": "login tests"})
        assert as_json.status_code == 200
        live.get("/status/418")
        assert control(live, "GET", "status").json()["context"] == "login tests"
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
    finally:
        live.stop()
    with read_data(data_files(project)[0]) as data:
        core = next(name for name in data.measured_files() if name.endswith("httpbin/core.py"))
        by_line = data.contexts_by_lineno(core)
    assert by_line[GET_BODY] == ["checkout tests"]
    assert by_line[STATUS_BODY] == ["login tests"]


def test_contexts_are_recorded_without_asking_or_refused_saying_why(project: Path) -> None:
    live = CovguardServe(["httpbin:app"], cwd=project)  # sysmon on 3.12+, no --contexts
    try:
        answer = control(live, "POST", "context", data="a test")
        status = control(live, "GET", "status").json()
    finally:
        live.stop()
    if status["core"] == "sysmon" and coverage.version_info < (7, 18):  # make test's oldest
        assert answer.status_code == 409
        assert "loses lines at a context switch under sysmon" in answer.json()["error"]
        assert "install coverage>=7.18" in answer.json()["error"]
        assert "--contexts" in answer.json()["error"]
        assert status["contexts_supported"] is False
    else:
        assert answer.status_code == 200, answer.text
        assert status["contexts_supported"] is True


@pytest.mark.core_independent
def test_bad_control_requests_are_refused_and_change_nothing(project: Path) -> None:
    live = CovguardServe(["httpbin:app", "--contexts"], cwd=project)
    try:
        assert control(live, "GET", "save").status_code == 405
        assert control(live, "GET", "save").headers["Allow"] == "POST"
        assert control(live, "POST", "status").headers["Allow"] == "GET"
        assert requests.get(f"{live.url}/__coverage__/status", timeout=10).status_code == 403
        assert requests.post(f"{live.url}/__coverage__/reset", timeout=10).status_code == 403
        assert control(live, "POST", "context", data="").status_code == 400
        assert control(live, "POST", "context", json={"context": 3}).status_code == 400
        assert control(live, "POST", "context", data="x" * 5000).status_code == 413
        assert data_files(project) == []
        assert live.get("/get").status_code == 200
    finally:
        live.stop()


def test_data_is_a_sqlite_file_that_combine_accepts(project: Path, tmp_path: Path) -> None:
    live = CovguardServe(["httpbin:app"], cwd=project)
    try:
        live.get("/get")
        answer = control(live, "GET", "data")
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/vnd.sqlite3"
        assert answer.content.startswith(b"SQLite format 3\x00")
    finally:
        live.stop()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".coverage.downloaded").write_bytes(answer.content)
    with contextlib.closing(sqlite3.connect(elsewhere / ".coverage.downloaded")) as database:
        assert database.execute("select count(*) from file").fetchone()[0] > 0
    subprocess.run(
        [PY, "-m", "coverage", "combine"], cwd=elsewhere, check=True, capture_output=True
    )
    with read_data(elsewhere / ".coverage") as combined:
        core = next(name for name in combined.measured_files() if name.endswith("httpbin/core.py"))
        assert GET_BODY in (combined.lines(core) or [])


def test_collect_from_two_servers_equals_coverage_run_on_the_whole_workload(
    tmp_path: Path, httpbin_reference: dict[str, set[int]]
) -> None:
    first, second, here = (tmp_path / name for name in ("one", "two", "collector"))
    for folder in (first, second, here):
        folder.mkdir()
        (folder / ".coveragerc").write_text(HTTPBIN_COVERAGERC)
    one = CovguardServe(["httpbin:app"], cwd=first)
    two = CovguardServe(["httpbin:app", "--server", "werkzeug"], cwd=second)
    try:
        paths = ["/get?x=1", "/status/418", "/headers", "/base64/aGVsbG8=", "/nope"]
        for index, path in enumerate(paths):
            (one if index % 2 else two).get(path)
        env = {**os.environ, "COVGUARD_TOKEN": TOKEN}
        done = subprocess.run(
            [PY, "-m", "wsgi_covguard", "collect", one.url, two.url],
            cwd=here, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        collected = sorted(path.name for path in here.glob(".coverage.*"))
        assert collected == sorted(
            f".coverage.127_0_0_1_{server.url.rsplit(':', 1)[1]}.collected" for server in (one, two)
        )
        subprocess.run([PY, "-m", "coverage", "combine"], cwd=here, check=True, capture_output=True)
        with read_data(here / ".coverage") as combined:
            union = {
                "httpbin/" + name.split("/httpbin/")[1]: set(combined.lines(name) or ())
                for name in combined.measured_files()
            }
        assert union == httpbin_reference
    finally:
        one.stop()
        two.stop()


@pytest.mark.core_independent
def test_collect_names_each_server_it_could_not_reach(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "collect", dead],
        cwd=tmp_path, env={**os.environ, "COVGUARD_TOKEN": TOKEN}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"covguard: cannot reach {dead}: ")
    assert TOKEN not in done.stderr


def test_under_gunicorn_save_and_reset_reach_every_worker(
    project: Path, servers: Callable[..., RunningServer]
) -> None:
    (project / "wsgi.py").write_text(HTTPBIN_ENTRY)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", "3", "wsgi:application"]
    master = servers(argv, cwd=project, port=port).wait_listening()
    for _ in range(100):
        if len(children(master.pid)) == 3:
            break
        drive_httpbin(lambda path: requests.get(master.url + path, timeout=10))
    workers = set(children(master.pid))
    assert len(workers) == 3
    # A socket file left by a dead process whose pid the master has now (pids come back):
    # the master does not measure, and is not asked.
    # (A file already there was left by a process killed with that pid: it is gone too.)
    stale_path = _run_dir() / f"{master.pid}.sock"
    stale_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(stale_path))

    saved = control(master, "POST", "save").json()
    assert set(saved["saved"]) == workers, "every worker saved, not only the one asked"
    assert saved["errors"] == []
    on_disk = {int(path.name.split(".pid")[1].split(".")[0]) for path in data_files(project)}
    assert on_disk == workers
    assert control(master, "GET", "status").json()["workers"] == 3
    data = control(master, "GET", "data")
    assert data.status_code == 200

    assert set(control(master, "POST", "reset").json()["reset"]) == workers
    assert data_files(project) == [], "each worker removed its own file"
    for _ in range(6):
        assert requests.get(master.url + "/status/418", timeout=10).status_code == 418
    assert master.shutdown().status_code == 202
    assert master.wait(timeout=10) == 0
    stale_path.unlink()
    lines = saved_lines(project)
    assert GET_BODY not in lines, "no worker kept lines from before the reset"
    assert STATUS_BODY in lines


#: Appended to the entry point, after the guard's own atexit work (atexit runs last in,
#: first out): a worker that takes a while to exit, as one with slow atexit work of its
#: own does, while its control socket is still up.
LINGER_AT_EXIT = """
import atexit, os, time

def linger():
    if os.path.exists("linger"):
        open(f"lingering.{os.getpid()}", "w").close()
        time.sleep(4)

atexit.register(linger)
"""


def test_a_worker_on_its_way_out_still_answers_its_siblings(
    project: Path, servers: Callable[..., RunningServer]
) -> None:
    # From Python 3.12 an exiting interpreter starts no thread, and the control listener
    # made one per command: the command went unanswered, with a traceback in the log.
    (project / "wsgi.py").write_text(HTTPBIN_ENTRY + LINGER_AT_EXIT)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", "2", "wsgi:application"]
    master = servers(argv, cwd=project, port=port).wait_listening()
    for _ in range(100):
        if len(children(master.pid)) == 2 and control(master, "GET", "status").ok:
            break
        drive_httpbin(lambda path: requests.get(master.url + path, timeout=10))
    leaving = children(master.pid)[0]
    (project / "linger").touch()
    os.kill(leaving, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not (project / f"lingering.{leaving}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (project / f"lingering.{leaving}").exists(), master.output()

    saved = control(master, "POST", "save").json()
    assert saved["errors"] == [], master.output()
    assert leaving in saved["saved"], "the worker on its way out answered"
    (project / "linger").unlink()
    assert master.shutdown().status_code == 202
    assert master.wait(timeout=15) == 0
    assert "Traceback" not in master.output()
