"""The shutdown route on real servers, each started with SIGINT ignored (``cmd &``).

For each server: refusals change nothing, the good request answers 202, the
process exits 0 by itself, and the lines saved equal those ``coverage run``
measures around the same server for the same requests.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from live import BIN, TOKEN, RunningServer, data_files, free_port, measured_lines, server_argv

# One worker computes the module's coverage_run_lines once for all its tests (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_shutdown")

PY = sys.executable
SERVERS = [
    "waitress-serve",
    "waitress.serve",
    "werkzeug-threaded",
    "werkzeug",
    "flask-run",
    "wsgiref",
]


def drive(server: RunningServer) -> None:
    """The same workload for every server: pages, the form, a redirect, JSON, a 404."""
    assert server.get("/").status_code == 200
    created = server.post("/tasks", data={"title": "Measure me", "priority": "high"})
    assert created.status_code == 200
    assert "Measure me" in created.text
    assert server.post("/tasks", data={"title": ""}).status_code == 400
    assert server.get("/api/tasks").json()[0]["title"] == "Measure me"
    assert server.get("/tasks/404").status_code == 404


@pytest.fixture(scope="module")
def coverage_run_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[int]]:
    """The reference: ``coverage run`` around waitress, same workload, no token."""
    import shutil

    from live import FLASK_EXAMPLE

    folder = tmp_path_factory.mktemp("reference") / "taskboard-app"
    shutil.copytree(
        FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns(".coverage.*", "__pycache__")
    )
    port = free_port()
    argv = [
        PY,
        "-m",
        "coverage",
        "run",
        "-p",
        "-m",
        "waitress",
        f"--listen=127.0.0.1:{port}",
        "wsgi:application",
    ]
    server = RunningServer(argv, cwd=folder, port=port, token=None, background=False)
    try:
        server.wait_listening()
        drive(server)
        assert server.post("/__shutdown__").status_code == 404  # inert: the app's own 404
        server.signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
    finally:
        server.stop()
    lines = measured_lines(folder, "taskboard")
    source = (folder / "taskboard" / "__init__.py").read_text().splitlines()
    import_time = source.index("def create_app(store: TaskStore | None = None) -> Flask:") + 1
    assert import_time in lines["taskboard/__init__.py"], (
        "the reference must hold import-time lines"
    )
    return lines


@pytest.mark.parametrize("name", SERVERS)
def test_refusals_then_shutdown_saves_what_coverage_run_sees(
    name: str,
    taskboard: Path,
    servers: Callable[..., RunningServer],
    coverage_run_lines: dict[str, set[int]],
) -> None:
    port = free_port()
    server = servers(server_argv(name, port), cwd=taskboard, port=port).wait_listening()
    drive(server)

    no_token = server.post("/__shutdown__")
    wrong_token = server.shutdown(token="not-the-token-but-long-enough")
    in_query = server.post(f"/__shutdown__?token={TOKEN}")
    in_cookie = server.post("/__shutdown__", cookies={"token": TOKEN, "Authorization": TOKEN})
    as_basic = server.post("/__shutdown__", auth=("covguard", TOKEN))
    wrong_method = server.get("/__shutdown__", headers={"Authorization": f"Bearer {TOKEN}"})
    refusals = [no_token, wrong_token, in_query, in_cookie, as_basic]
    assert [answer.status_code for answer in refusals] == [403] * 5
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    for refused in (*refusals, wrong_method):
        assert TOKEN not in refused.text
        assert TOKEN not in str(refused.headers)
    assert server.get("/").status_code == 200, "a refusal must not stop the server"
    assert data_files(taskboard) == [], "a refusal must not save"

    accepted = server.shutdown()
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "stopping"
    assert TOKEN not in accepted.text
    assert server.wait(timeout=5) == 0, server.output()
    output = server.output()
    assert "Traceback" not in output
    assert measured_lines(taskboard, "taskboard") == coverage_run_lines
    # What a CI log reader looks for: who asked (the peer, never the token), what was saved
    # (in the app's own log format where it configured logging: flask run).
    ours = [line for line in output.splitlines() if "covguard" in line and "HTTP/1" not in line]
    [asked] = [line for line in ours if "shutdown asked by " in line]
    assert "shutdown asked by 127.0.0.1: draining (up to 10s), saving, then " in asked
    [saved] = [line for line in ours if "covguard: saved " in line or "covguard:saved " in line]
    [data_file] = data_files(taskboard)
    lines = sum(len(found) for found in coverage_run_lines.values())
    assert f"saved {lines} lines of " in saved
    assert f" to {data_file.name} (pid " in saved
    assert not [line for line in ours if TOKEN in line]


@pytest.mark.core_independent
def test_the_route_follows_the_mount_point(
    taskboard: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = [
        str(BIN / "waitress-serve"),
        f"--listen=127.0.0.1:{port}",
        "--url-prefix=/board",
        "wsgi:application",
    ]
    server = servers(argv, cwd=taskboard, port=port).wait_listening()
    assert server.get("/board/").status_code == 200
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert server.post("/board/__shutdown__", headers=headers).status_code == 202
    assert server.wait(timeout=5) == 0


@pytest.mark.core_independent
def test_remote_clients_are_refused_unless_allowed(
    taskboard: Path, servers: Callable[..., RunningServer]
) -> None:
    """Behind a trusted proxy waitress reports the forwarded client address."""
    port = free_port()
    argv = [
        str(BIN / "waitress-serve"),
        f"--listen=127.0.0.1:{port}",
        "--trusted-proxy=127.0.0.1",
        "--trusted-proxy-headers=x-forwarded-for",
        "wsgi:application",
    ]
    server = servers(argv, cwd=taskboard, port=port).wait_listening()
    remote = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "203.0.113.7"}
    refused = server.post("/__shutdown__", headers=remote)
    assert refused.status_code == 403
    assert "loopback" in refused.json()["error"]
    assert server.get("/").status_code == 200
    server.stop()

    port = free_port()
    argv[1] = f"--listen=127.0.0.1:{port}"
    allowed = servers(
        argv, cwd=taskboard, port=port, env={"COVGUARD_ALLOW_REMOTE": "1"}
    ).wait_listening()
    assert allowed.post("/__shutdown__", headers=remote).status_code == 202
    assert allowed.wait(timeout=5) == 0


@pytest.mark.core_independent
def test_without_a_token_the_route_is_the_apps_and_nothing_is_written(
    taskboard: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = server_argv("waitress-serve", port)
    server = servers(argv, cwd=taskboard, port=port, token=None, background=False).wait_listening()
    answer = server.post("/__shutdown__", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert "No such page or task." in answer.text  # the app's own 404 page
    # covguard shutdown names the cause: no route of ours there.
    env = {"PATH": "/usr/bin:/bin", "COVGUARD_TOKEN": TOKEN}
    told = subprocess.run(
        [PY, "-m", "wsgi_covguard", "shutdown", server.url], cwd=taskboard, env=env,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert told.returncode != 0
    assert told.stderr.strip() == (
        f"covguard: no covguard route at {server.url}/__shutdown__ (it answered 404): was the"
        " server started with COVGUARD_TOKEN?"
    )
    server.signal(signal.SIGINT)
    assert server.wait(timeout=5) == 0
    # One line at start-up says so, and nothing else of ours.
    said = [line for line in server.output().splitlines() if "covguard" in line]
    assert said == [
        "covguard: no token (COVGUARD_TOKEN unset): measuring nothing, and the control routes"
        " (/__shutdown__, /__coverage__/...) are off; the app is served as it is"
    ]
    assert data_files(taskboard) == []


@pytest.mark.core_independent
def test_a_short_token_is_refused_at_start_up_in_one_line(taskboard: Path) -> None:
    done = subprocess.run(
        [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{free_port()}", "wsgi:application"],
        cwd=taskboard,
        env={"COVGUARD_TOKEN": "short", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "covguard: the token is 5 characters long; use at least 16, e.g. COVGUARD_TOKEN=$(python"
        " -c 'import secrets; print(secrets.token_urlsafe(24))')"
    )
