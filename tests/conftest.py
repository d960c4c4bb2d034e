from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import FLASK_EXAMPLE, TEST_APPS, LiveServer


@pytest.fixture
def taskboard(tmp_path: Path) -> Path:
    """A private copy of the Flask example: its data files land there alone."""
    folder = tmp_path / "taskboard-app"
    shutil.copytree(
        FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns(".coverage.*", "__pycache__")
    )
    return folder


@pytest.fixture
def plainapp(tmp_path: Path) -> Path:
    """A private copy of the framework-free app with a slow route."""
    folder = tmp_path / "plain-app"
    shutil.copytree(TEST_APPS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture
def servers() -> Iterator[Callable[..., LiveServer]]:
    """Start servers with ``servers(argv, cwd=..., port=...)``; ended at teardown."""
    started: list[LiveServer] = []

    def launch(argv: list[str], **kwargs: object) -> LiveServer:
        server = LiveServer(argv, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield launch
    for server in started:
        server.stop()
