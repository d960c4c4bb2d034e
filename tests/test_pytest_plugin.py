"""The pytest plugin: a live server for the session, per-test contexts, pytest-cov, xdist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import coverage
import httpbin.core
import pytest
from live import HTTPBIN_COVERAGERC, PYTEST, data_files, read_data

CORE_PY = Path(httpbin.core.__file__).read_text().splitlines()
GET_BODY = CORE_PY.index('    return jsonify(get_dict("url", "args", "headers", "origin"))') + 1
HEADERS_BODY = CORE_PY.index("    return jsonify(get_dict('headers'))") + 1

TESTS = """
import urllib.request


def test_get(covguard_server):
    with urllib.request.urlopen(covguard_server.url + "/get") as answer:
        assert answer.status == 200


def test_headers(covguard_server):
    with urllib.request.urlopen(covguard_server.url + "/headers") as answer:
        assert answer.status == 200


def test_without_the_server():
    assert True
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".coveragerc").write_text(HTTPBIN_COVERAGERC)
    (tmp_path / "test_e2e.py").write_text(TESTS)
    return tmp_path


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "PYTEST_"))}
    return subprocess.run(
        [*PYTEST, *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def contexts_of(path: Path) -> dict[int, list[str]]:
    with read_data(path) as data:
        core = next(name for name in data.measured_files() if name.endswith("httpbin/core.py"))
        return data.contexts_by_lineno(core)


def test_each_server_line_carries_the_node_id_of_the_test_that_ran_it(project: Path) -> None:
    done = run_pytest(
        project, "--covguard-app", "httpbin:app", "--covguard-contexts", "test_e2e.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    [server_data] = data_files(project)
    by_line = contexts_of(server_data)
    assert by_line[GET_BODY] == ["test_e2e.py::test_get|run"]
    assert by_line[HEADERS_BODY] == ["test_e2e.py::test_headers|run"]


PHASES = """
import threading, time, urllib.request
import pytest


@pytest.fixture
def visitor(covguard_server):
    urllib.request.urlopen(covguard_server.url + "/headers").read()  # setting up, through the app
    yield
    urllib.request.urlopen(covguard_server.url + "/uuid").read()  # tearing down, likewise


def test_with_a_fixture(visitor, covguard_server):
    urllib.request.urlopen(covguard_server.url + "/get").read()


def test_late(covguard_server):
    # A request the test does not wait for: it is still running when the test ends.
    fetch = lambda: urllib.request.urlopen(covguard_server.url + "/delay/2").read()
    threading.Thread(target=fetch, daemon=True).start()
    deadline = time.monotonic() + 10
    while covguard_server.control("/__coverage__/status")["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_after():
    time.sleep(2.5)
"""
UUID_BODY = CORE_PY.index("    return jsonify(uuid=str(uuid.uuid4()))") + 1


def test_each_phase_has_its_context_and_late_requests_are_named(project: Path) -> None:
    (project / "test_phases.py").write_text(PHASES)
    done = run_pytest(
        project, "--covguard-app", "httpbin:app", "--covguard-contexts", "test_phases.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [server_data] = data_files(project)
    by_line = contexts_of(server_data)
    test = "test_phases.py::test_with_a_fixture"
    assert by_line[HEADERS_BODY] == [f"{test}|setup"]
    assert by_line[GET_BODY] == [f"{test}|run"]
    assert by_line[UUID_BODY] == [f"{test}|teardown"]
    summary = done.stdout[done.stdout.index("covguard: requests across a context switch") :]
    assert "1 request(s) were still running when the server's context changed" in summary
    assert (
        "GET /delay/2 began in 'test_phases.py::test_late|run',"
        " ended in 'test_phases.py::test_after|run'"
    ) in summary


@pytest.mark.core_independent
def test_without_late_requests_the_summary_says_nothing(project: Path) -> None:
    done = run_pytest(
        project, "--covguard-app", "httpbin:app", "--covguard-contexts", "test_e2e.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "covguard: requests across a context switch" not in done.stdout


@pytest.mark.core_independent
def test_the_ini_options_work_too(project: Path) -> None:
    (project / "pytest.ini").write_text(
        "[pytest]\ncovguard_app = httpbin:app\ncovguard_server = werkzeug\n"
    )
    done = run_pytest(project, "test_e2e.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(data_files(project)) == 1


@pytest.mark.core_independent
def test_pytest_cov_reports_the_servers_files(project: Path) -> None:
    done = run_pytest(
        project, "--covguard-app", "httpbin:app", "--cov", "--cov-report=term", "test_e2e.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if "httpbin/core.py" in line)
    statements, missed = (int(field) for field in row.split()[1:3])
    assert missed < statements, "the server's lines are in pytest-cov's report"


def test_under_xdist_each_worker_has_its_own_server(project: Path) -> None:
    done = run_pytest(
        project, "-n", "2", "--dist", "each", "--covguard-app", "httpbin:app",
        "--covguard-contexts", "test_e2e.py",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    servers = data_files(project)
    assert len(servers) == 2, "one server per worker"
    for server_data in servers:
        by_line = contexts_of(server_data)
        assert by_line[GET_BODY] == ["test_e2e.py::test_get|run"]
        assert by_line[HEADERS_BODY] == ["test_e2e.py::test_headers|run"]


@pytest.mark.core_independent
def test_the_plugin_is_inert_unless_asked(project: Path) -> None:
    done = run_pytest(project, "test_e2e.py::test_without_the_server")
    assert done.returncode == 0
    assert data_files(project) == []
    asked = run_pytest(project, "test_e2e.py::test_get")
    assert asked.returncode != 0
    assert (
        "covguard_server needs the app to serve: pass --covguard-app" in asked.stdout + asked.stderr
    )


#: The tests under ``covguard run``: they talk to the server behind COVGUARD_URL.
UNDER_RUN = """
import os
import urllib.request


def test_get():
    with urllib.request.urlopen(os.environ["COVGUARD_URL"] + "/get") as answer:
        assert answer.status == 200


def test_headers():
    with urllib.request.urlopen(os.environ["COVGUARD_URL"] + "/headers") as answer:
        assert answer.status == 200
"""


def covguard_run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "test_run.py").write_text(UNDER_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "wsgi_covguard", "run", "httpbin:app", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_under_covguard_run_the_server_behind_its_url_is_labelled_per_test(project: Path) -> None:
    pytest_argv = [*PYTEST, "test_run.py"]
    done = covguard_run(project, "--contexts", "--", *pytest_argv, "--covguard-contexts")
    assert done.returncode == 0, done.stdout + done.stderr
    by_line = contexts_of(project / ".coverage")  # covguard run combined it
    assert by_line[GET_BODY] == ["test_run.py::test_get|run"]
    assert by_line[HEADERS_BODY] == ["test_run.py::test_headers|run"]
    assert "carries the empty one" not in done.stderr


def test_contexts_asked_of_a_server_are_recorded_whatever_its_core_or_refused(
    project: Path,
) -> None:
    pytest_argv = [*PYTEST, "test_run.py"]
    done = covguard_run(project, "--", *pytest_argv, "--covguard-contexts")  # no --contexts
    if sys.version_info >= (3, 12) and coverage.version_info < (7, 18):  # the oldest allowed
        assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
        assert "--covguard-contexts with COVGUARD_URL=http://127.0.0.1:" in done.stderr
        assert "that server records no contexts (core sysmon)" in done.stderr
        assert "start it with `covguard run --contexts`" in done.stderr
    else:  # ctrace before 3.12, sysmon after: labelled per test either way
        assert done.returncode == 0, done.stdout + done.stderr
        assert contexts_of(project / ".coverage")[GET_BODY] == ["test_run.py::test_get|run"]
    split = covguard_run(project, "--contexts", "--", *pytest_argv, "--covguard-contexts", "-n2")
    assert split.returncode == 4, split.stdout + split.stderr
    assert "xdist workers would set it in turn" in split.stderr


@pytest.mark.core_independent
def test_a_run_with_contexts_that_set_none_says_so(project: Path) -> None:
    pytest_argv = [*PYTEST, "test_run.py"]
    done = covguard_run(project, "--contexts", "--", *pytest_argv)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "covguard: --contexts: the command set no context, so every line carries the empty one;"
        " label each test with pytest --covguard-contexts"
    ) in done.stderr


FAILING = """
import urllib.request


def test_fails_after_a_request(covguard_server):
    urllib.request.urlopen(covguard_server.url + "/get").read()
    assert False, "on purpose: pytest shows what it captured"
"""


@pytest.mark.core_independent
def test_the_servers_access_log_is_not_a_tests_captured_output(project: Path) -> None:
    (project / "test_fails.py").write_text(FAILING)
    base = project / "base"
    done = run_pytest(project, "--covguard-app", "httpbin:app", "--covguard-server", "werkzeug",
                      "--basetemp", str(base), "test_fails.py")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "on purpose" in done.stdout
    log = base / "covguard-server.log"
    assert f"covguard: the server's output is in {log}" in done.stdout
    said = log.read_text()
    assert '"GET /get HTTP/1.1" 200' in said  # werkzeug's access log, there
    assert "covguard: serving httpbin:app on http://127.0.0.1:" in said
    assert "GET /get" not in done.stdout + done.stderr  # not in the failure's report
