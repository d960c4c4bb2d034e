"""``covguard serve``, ``run`` and ``shutdown`` on a real third-party app (httpbin)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpbin.core
import pytest
import requests
from live import (
    HTTPBIN_COVERAGERC,
    HTTPBIN_ENTRY,
    ROOT,
    TOKEN,
    CovguardServe,
    data_files,
    drive_httpbin,
    measured_lines,
)

from wsgi_covguard.servers import WSGI_SERVERS, family

PY = sys.executable
#: The one-process WSGI servers ``covguard serve`` launches, from its registry.
SERVERS = [name for name in WSGI_SERVERS if not family(name).takes_workers]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder whose coverage configuration measures httpbin (a site-packages app)."""
    (tmp_path / ".coveragerc").write_text(HTTPBIN_COVERAGERC)
    (tmp_path / "notwsgi.py").write_text(
        "app = 42\n\ndef create_app():\n    return 'not an app'\n\ndef factory():\n"
        "    from httpbin import app\n    return app\n"
    )
    return tmp_path


@pytest.fixture
def serve(project: Path) -> Iterator[type[CovguardServe]]:
    started: list[CovguardServe] = []

    class Tracked(CovguardServe):
        def __init__(self, args: list[str], **kwargs: object) -> None:
            kwargs.setdefault("cwd", project)
            super().__init__(args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()


#: APP as covguard serve is given it: the bare app (serve wraps it), or the README's entry
#: point, which wraps itself as it is imported (before serve has made the server).
ENTRIES = {"bare app": "httpbin:app", "entry point": "entry:application"}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("server", SERVERS)
def test_serve_measures_what_coverage_run_measures(
    server: str,
    entry: str,
    project: Path,
    serve: type[CovguardServe],
    httpbin_reference: dict[str, set[int]],
) -> None:
    (project / "entry.py").write_text(HTTPBIN_ENTRY)
    live = serve([ENTRIES[entry], "--server", server])
    assert live.url.startswith("http://127.0.0.1:")
    assert f"({server}, core " in live.ready_line
    assert f"pid {live.pid})" in live.ready_line
    drive_httpbin(live.get)
    assert live.shutdown().status_code == 202
    assert live.wait() == 0, live.stderr
    assert "Traceback" not in live.stderr
    assert measured_lines(project, "httpbin") == httpbin_reference


@pytest.mark.core_independent
def test_a_factory_is_called(project: Path, serve: type[CovguardServe]) -> None:
    live = serve(["notwsgi:factory()"])
    assert live.get("/get").status_code == 200
    assert live.shutdown().status_code == 202
    assert live.wait() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_and_saves_on_signals(
    signum: int, project: Path, serve: type[CovguardServe]
) -> None:
    live = serve(["httpbin:app"])
    assert live.get("/base64/aGVsbG8=").text == "hello"
    os.kill(live.pid, signum)
    assert live.wait() == 0, live.stderr
    assert len(data_files(project)) == 1
    core = Path(httpbin.core.__file__).read_text().splitlines()
    decoded = core.index('        return base64.urlsafe_b64decode(encoded).decode("utf-8")') + 1
    assert decoded in measured_lines(project, "httpbin")["httpbin/core.py"], "the request's line"


@pytest.mark.core_independent
def test_without_a_token_serve_writes_one_only_the_user_can_read(
    project: Path, serve: type[CovguardServe]
) -> None:
    live = serve(["httpbin:app"], token=None)
    deadline = time.monotonic() + 10
    while not any(" the token is in " in line for line in live.stderr_lines()):
        assert time.monotonic() < deadline, live.stderr_lines()
        time.sleep(0.05)
    said = next(line for line in live.stderr_lines() if " the token is in " in line)
    path = Path(said.split(" the token is in ")[1].strip())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    live.token = path.read_text().strip()
    assert len(live.token) >= 16
    assert live.shutdown().status_code == 202
    assert live.wait() == 0
    assert not path.exists(), "removed at exit"


def test_shutdown_command_stops_the_server_and_waits(
    project: Path, serve: type[CovguardServe]
) -> None:
    live = serve(["httpbin:app", "--server", "werkzeug"])
    env = {**os.environ, "COVGUARD_URL": live.url, "COVGUARD_TOKEN": TOKEN}
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "shutdown"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "has stopped" in done.stdout
    with pytest.raises(requests.ConnectionError):
        live.get("/get")
    assert live.wait() == 0
    assert data_files(project)


@pytest.mark.core_independent
def test_shutdown_command_with_a_wrong_token_fails_and_stops_nothing(
    project: Path, serve: type[CovguardServe]
) -> None:
    live = serve(["httpbin:app"])
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "shutdown", live.url],
        env={**os.environ, "COVGUARD_TOKEN": "wrong-token-0123456789"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "answered 403" in done.stderr
    assert live.get("/get").status_code == 200
    assert live.shutdown().status_code == 202
    assert live.wait() == 0


def covguard_run(project: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    return subprocess.run(
        ["covguard", "run", "httpbin:app", "--server", "cheroot", "--", *command],
        cwd=project,
        env={**env, "PATH": f"{Path(PY).parent}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )


CLIENT = (
    "import os, sys, urllib.request; "
    "urllib.request.urlopen(os.environ['COVGUARD_URL'] + '/base64/aGVsbG8='); sys.exit({})"
)


def test_run_serves_runs_stops_combines_and_reports(project: Path) -> None:
    done = covguard_run(project, PY, "-c", CLIENT.format(0))
    assert done.returncode == 0, done.stderr
    assert "httpbin/core.py" in done.stdout
    assert "TOTAL" in done.stdout
    assert (project / ".coverage").exists()
    assert data_files(project) == [], "combined into .coverage"


@pytest.mark.core_independent
def test_runs_report_keeps_coverages_own_report_settings(project: Path) -> None:
    # A project of 900 files sets these so that its report lists what matters.
    with (project / ".coveragerc").open("a") as rc:
        rc.write("\n[report]\nskip_covered = True\nskip_empty = True\n")
    done = covguard_run(project, PY, "-c", CLIENT.format(0))
    assert done.returncode == 0, done.stderr
    assert "httpbin/core.py" in done.stdout
    assert "httpbin/__init__.py" not in done.stdout  # fully run: skipped
    assert re.search(r"\d+ files? skipped due to complete coverage\.", done.stdout)  # its line


@pytest.mark.core_independent
def test_run_exits_with_the_commands_status(project: Path) -> None:
    done = covguard_run(project, PY, "-c", CLIENT.format(3))
    assert done.returncode == 3
    assert "httpbin/core.py" in done.stdout, "the report is printed anyway"


def test_run_fails_under_the_bar_with_one_line(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "run", "httpbin:app", "--fail-under", "99", "--html", "html",
         "--", PY, "-c", CLIENT.format(0)],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("covguard: total coverage ")
    assert "below --fail-under 99%" in done.stderr
    assert (project / "html" / "index.html").exists()


@pytest.mark.core_independent
def test_run_says_so_when_the_server_dies_before_listening(project: Path) -> None:
    done = covguard_run(project, PY, "-c", "pass")
    assert done.returncode == 0
    bad = subprocess.run(
        [PY, "-m", "wsgi_covguard", "run", "nosuchmodule:app", "--", PY, "-c", "pass"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "covguard: cannot import 'nosuchmodule'" in bad.stderr
    assert "before listening" in bad.stderr.strip().splitlines()[-1]


# -- start-up errors: exit 2 within 5 s, one line naming the value and the fix ----------------


def _busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def busy_port() -> Iterator[int]:
    yield from _busy_port()


ERRORS = {
    "no module": (["nosuchmodule:app"], {}, ["'nosuchmodule'", "--app-dir"]),
    "no attribute": (["httpbin:nope"], {}, ["'nope'", "module:attribute"]),
    "not callable": (["notwsgi:app"], {}, ["'notwsgi:app'", "int 42", "WSGI callable"]),
    "a factory named without ()": (["notwsgi:create_app"], {}, ["notwsgi:create_app()?"]),
    "unknown server": (["httpbin:app", "--server", "tornado"], {}, ["'tornado'", "waitress"]),
    "short token": (["httpbin:app"], {"COVGUARD_TOKEN": "short"}, ["5 characters", "at least 16"]),
    "unwritable data file": (
        ["httpbin:app"], {"COVERAGE_FILE": "notwsgi.py/.coverage"},
        ["'", "notwsgi.py/.coverage", "COVERAGE_FILE"],
    ),
}  # fmt: skip


@pytest.mark.core_independent
@pytest.mark.parametrize("case", list(ERRORS))
def test_start_up_errors_are_one_line(case: str, project: Path) -> None:
    args, env, expected = ERRORS[case]
    assert_one_line_error(project, args, env, expected)


@pytest.mark.core_independent
def test_a_busy_port_is_one_line(project: Path, busy_port: int) -> None:
    assert_one_line_error(
        project, ["httpbin:app", "--port", str(busy_port)], {}, [f"port {busy_port}", "--port 0"]
    )


def assert_one_line_error(
    project: Path, args: list[str], env: dict[str, str], expected: list[str]
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "serve", *args],
        cwd=project, env={**base, "COVGUARD_TOKEN": TOKEN, **env},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [
        line for line in done.stderr.splitlines() if "serving the static landing page" not in line
    ]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("covguard: ")
    for part in expected:
        assert part in lines[0]
    assert done.stdout == ""


@pytest.mark.core_independent
def test_a_missing_extra_names_the_extra(tmp_path: Path) -> None:
    """A fresh environment with the base install only, as a new user has it: from a built
    wheel, not the checkout (a module the wheel leaves out fails here)."""
    source = tmp_path / "source"  # built there: the build leaves its folders in the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "htmlcov", "tests", "examples", "benchmarks",
    ))  # fmt: skip
    venv = tmp_path / "venv"
    # No pip of its own: this one's pip builds the wheel and installs it with its base
    # dependencies there (a quarter of the time of ensurepip and a build in the new one).
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [PY, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    built = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)],
                           timeout=600, capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("wsgi_covguard-*.whl")
    into = ["--python", str(venv / "bin" / "python")]
    installed = subprocess.run([*pip, *into, "install", str(wheel)],
                               timeout=600, capture_output=True, text=True)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    done = subprocess.run(
        [venv / "bin" / "covguard", "serve", "anything:app", "--server", "cheroot"],
        cwd=tmp_path, env={"COVGUARD_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "covguard: the cheroot server is not installed; pip install 'wsgi_covguard[cheroot]'\n"
    )
