"""Stopping adds nothing: what each of our clients saves equals ``coverage run``'s.

``covguard shutdown``, ``covguard run`` and the pytest plugin's stop each end a server
after the same client requests. The app logs every request it gets and has a root page
no client asks for: a stop that sent the app a request of its own would add a line
``coverage run`` never saw, and a request id nobody sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from live import (
    BIN,
    PYTEST,
    TOKEN,
    CovguardServe,
    coverage_run_reference,
    measured_lines,
    read_data,
)

# One worker computes the module's reference once for all its tests (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_stops_add_nothing")

#: The client requests, the same for every way of stopping (urllib: no extra package).
DRIVE = """
import os, urllib.error, urllib.request
url = os.environ["COVGUARD_URL"]
for path in ("/hello", "/counted?first", "/counted?second"):
    urllib.request.urlopen(url + path, timeout=10).read()
try:
    urllib.request.urlopen(url + "/nope", timeout=10)
except urllib.error.HTTPError as answer:
    assert answer.code == 404
"""


def drive(url: str) -> None:
    subprocess.run([sys.executable, "-c", DRIVE], env={**os.environ, "COVGUARD_URL": url},
                   check=True, timeout=60)  # fmt: skip


def requests_the_app_got(folder: Path) -> list[str]:
    return (folder / "requests.log").read_text().split()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, plain_source: Path) -> dict[str, set[int]]:
    folder = tmp_path_factory.mktemp("reference")
    for app in plain_source.glob("*.py"):
        (folder / app.name).write_text(app.read_text())
    lines = coverage_run_reference(folder, "plainapp:app", drive, "plainapp")
    assert requests_the_app_got(folder) == ["first", "second"]
    root_page = plain_source.joinpath("plainapp.py").read_text().splitlines()
    assert root_page.index("def root() -> bytes:") + 1 in lines["plainapp.py"], "import time"
    return lines


@pytest.fixture(scope="module")
def plain_source() -> Path:
    return Path(__file__).parent / "apps"


def test_covguard_shutdown_sends_the_app_nothing(
    plainapp: Path, reference: dict[str, set[int]]
) -> None:
    live = CovguardServe(["plainapp:app"], cwd=plainapp)
    try:
        drive(live.url)
        done = subprocess.run(
            [str(BIN / "covguard"), "shutdown", live.url],
            env={**os.environ, "COVGUARD_TOKEN": TOKEN}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"covguard: {live.url} has stopped\n"
        assert live.wait() == 0
    finally:
        live.stop()
    assert requests_the_app_got(plainapp) == ["first", "second"]
    assert measured_lines(plainapp, "plainapp") == reference


def test_covguard_run_sends_the_app_nothing(plainapp: Path, reference: dict[str, set[int]]) -> None:
    done = subprocess.run(
        [str(BIN / "covguard"), "run", "plainapp:app", "--", sys.executable, "-c", DRIVE],
        cwd=plainapp, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert requests_the_app_got(plainapp) == ["first", "second"]
    with read_data(plainapp / ".coverage") as data:  # `covguard run` combined the files
        [name] = data.measured_files()
        assert set(data.lines(name) or ()) == reference["plainapp.py"]


PLUGIN_TEST = f"""
import os, subprocess, sys


def test_drive(covguard_server):
    subprocess.run([sys.executable, "-c", {DRIVE!r}], check=True,
                   env={{**os.environ, "COVGUARD_URL": covguard_server.url}})
"""


def test_the_pytest_plugins_stop_sends_the_app_nothing(
    plainapp: Path, reference: dict[str, set[int]]
) -> None:
    (plainapp / "test_drive.py").write_text(PLUGIN_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "PYTEST_"))}
    done = subprocess.run(
        [*PYTEST, "--covguard-app",
         "plainapp:app", "test_drive.py"],
        cwd=plainapp, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert requests_the_app_got(plainapp) == ["first", "second"]
    assert measured_lines(plainapp, "plainapp") == reference


def test_the_drive_reaches_the_app(plainapp: Path) -> None:
    """The proof the three tests above can fail: a GET of the root is counted and measured."""
    live = CovguardServe(["plainapp:app"], cwd=plainapp)
    try:
        with urllib.request.urlopen(live.url + "/", timeout=10) as answer:
            assert answer.read() == b"the root page"
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
    finally:
        live.stop()
    root_body = (
        (plainapp / "plainapp.py")
        .read_text()
        .splitlines()
        .index('    return b"the root page"  # no test asks for it: whoever does adds this line')
    )
    assert root_body + 1 in measured_lines(plainapp, "plainapp")["plainapp.py"]
