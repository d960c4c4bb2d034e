from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import settings
from live import (
    FLASK_EXAMPLE,
    HTTPBIN_COVERAGERC,
    PYRAMID_EXAMPLE,
    TEST_APPS,
    RunningServer,
    coverage_run_reference,
    drive_httpbin,
    once_per_run,
)

# No time limit on an example: a verdict never rests on timing (speed lives in benchmarks/).
# A page of a report test took 331 ms on a busy machine against hypothesis's 200 ms default.
settings.register_profile("covguard", deadline=None)
settings.load_profile("covguard")


def _copy(example: Path, folder: Path) -> Path:
    shutil.copytree(example, folder, ignore=shutil.ignore_patterns(".coverage.*", "__pycache__"))
    return folder


@pytest.fixture
def taskboard(tmp_path: Path) -> Path:
    """A private copy of the Flask example: its data files land there alone."""
    return _copy(FLASK_EXAMPLE, tmp_path / "taskboard-app")


@pytest.fixture
def bookshelf(tmp_path: Path) -> Path:
    """A private copy of the Pyramid example, its ini file with it."""
    return _copy(PYRAMID_EXAMPLE, tmp_path / "bookshelf-app")


@pytest.fixture
def plainapp(tmp_path: Path) -> Path:
    """A private copy of the framework-free app with a slow route."""
    folder = tmp_path / "plain-app"
    shutil.copytree(TEST_APPS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture
def servers() -> Iterator[Callable[..., RunningServer]]:
    """Start servers with ``servers(argv, cwd=..., port=...)``; ended at teardown."""
    started: list[RunningServer] = []

    def launch(argv: list[str], **kwargs: object) -> RunningServer:
        server = RunningServer(argv, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield launch
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def httpbin_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[int]]:
    """What ``coverage run`` measures of httpbin (a real third-party app) for the workload."""
    folder = tmp_path_factory.mktemp("httpbin-reference")
    (folder / ".coveragerc").write_text(HTTPBIN_COVERAGERC)

    def drive(url: str) -> None:
        drive_httpbin(lambda path: requests.get(url + path, timeout=10))

    lines = once_per_run(tmp_path_factory, "httpbin-reference", lambda: coverage_run_reference(
        folder, "httpbin:app", drive, "httpbin"))  # fmt: skip
    import httpbin.core

    source = Path(httpbin.core.__file__).read_text().splitlines()
    decorator = source.index('@app.route("/get", methods=("GET",))') + 1
    assert decorator in lines["httpbin/core.py"], "the reference holds import-time lines"
    return lines


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 4 MiB (tmpfs), to fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """Two sets of measured lines (file -> line numbers) that differ: the lines each side
    alone has, per file, in full. A race that shows once in a busy suite run has to be
    readable from that one run's output, where pytest's own diff is cut short."""
    if op != "==" or not isinstance(left, dict) or not isinstance(right, dict):
        return None
    if not (_lines_by_file(left) and _lines_by_file(right)):
        return None
    said = ["the measured lines differ (left: the first operand):"]
    for name in sorted(left.keys() | right.keys()):
        mine, theirs = left.get(name, set()), right.get(name, set())
        if mine != theirs:
            said.append(f"  {name}: left only {sorted(mine - theirs)},"
                        f" right only {sorted(theirs - mine)}")  # fmt: skip
    return said


def _lines_by_file(value: dict[object, object]) -> bool:
    return all(isinstance(name, str) and isinstance(lines, set) for name, lines in value.items())
