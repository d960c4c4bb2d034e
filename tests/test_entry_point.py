"""The entry point is measured the same however the server is started.

A server started by hand imports the entry point before coverage starts (``start()``
runs inside it); ``covguard serve`` and ``coverage run`` start coverage first. The
entry point's own lines, and those of a module still importing it, are saved equal to
``coverage run``'s in every case, lines and arcs, on every core; an entry point whose
lines cannot be told is said in one line and nothing of it is guessed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import BIN, TOKEN, CovguardServe, RunningServer, data_files, free_port, read_data

PY = sys.executable

APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""

#: An entry point as users write it: a docstring, a setting, a statement over lines.
ENTRY = '''\
"""The entry point."""

import os
import wsgi_covguard

wsgi_covguard.start()
os.environ.setdefault(
    "APP_SETTING", "on"
)
import app  # noqa: E402
application = wsgi_covguard.{door}(
    app.{app})
'''

#: A module that imports the entry point: still importing when coverage starts.
OUTER = """\
import entry
application = entry.application
"""

#: What ``python -c`` cannot be: a script's own body is not a module being imported.
DRIVE = "import outer\n"


def project(folder: Path, settings: str = "", *, asgi: bool = False) -> Path:
    """The app, its entry point and a module importing it; ``drive.py`` imports them."""
    folder.mkdir()
    door = ("CovGuardASGI", "asgi") if asgi else ("CovGuard", "application")
    entry = ENTRY.format(door=door[0], app=door[1])
    for name, text in (("app.py", APP), ("entry.py", entry), ("outer.py", OUTER)):
        (folder / name).write_text(text)
    (folder / "drive.py").write_text(DRIVE)
    (folder / ".coveragerc").write_text(f"[run]\nsource = .\nomit = drive.py\n{settings}")
    return folder


def measured(folder: Path) -> dict[str, tuple[set[int], set[tuple[int, int]]]]:
    """Lines and arcs per file name, from every data file in ``folder``."""
    found: dict[str, tuple[set[int], set[tuple[int, int]]]] = {}
    files = data_files(folder) or [folder / ".coverage"]
    for path in files:
        with read_data(path) as part:
            for name in part.measured_files():
                lines, arcs = found.setdefault(Path(name).name, (set(), set()))
                lines.update(part.lines(name) or ())
                arcs.update(part.arcs(name) or ())
    return found


def coverage_run(folder: Path, *argv: str) -> None:
    subprocess.run([PY, "-m", "coverage", "run", *argv], cwd=folder, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    ["", "branch = true\n", "core = ctrace\n", "branch = true\ncore = ctrace\n", "timid = true\n"],
    ids=["default-core", "branch", "ctrace", "ctrace-branch", "pytrace"],
)
def test_modules_being_imported_are_measured_as_coverage_run_measures_them(
    tmp_path: Path, settings: str
) -> None:
    started_inside = project(tmp_path / "inside", settings)
    env = {**os.environ, "COVGUARD_TOKEN": TOKEN}
    done = subprocess.run([PY, "drive.py"], cwd=started_inside, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not measured" not in done.stderr
    reference = project(tmp_path / "reference", settings)
    coverage_run(reference, "drive.py")

    ours, theirs = measured(started_inside), measured(reference)
    assert ours["entry.py"] == theirs["entry.py"]
    assert ours["outer.py"] == theirs["outer.py"]
    assert ours == theirs
    assert 12 in ours["entry.py"][0], "a line after start() and the wrap"
    if "branch" in settings:
        assert (-1, 1) in ours["entry.py"][1], "arcs too"


def by_hand(name: str, port: int) -> list[str]:
    listen = f"127.0.0.1:{port}"
    return {
        "waitress-serve": [str(BIN / "waitress-serve"), f"--listen={listen}", "outer:application"],
        "gunicorn --workers 2": [
            str(BIN / "gunicorn"),
            "--workers",
            "2",
            "--bind",
            listen,
            "outer:application",
        ],
        "uvicorn": [
            PY,
            "-m",
            "uvicorn",
            "outer:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    }[name]


@pytest.mark.parametrize("launch", ["waitress-serve", "gunicorn --workers 2", "uvicorn",
                                    "covguard serve"])  # fmt: skip
def test_the_entry_point_is_measured_the_same_however_the_server_is_started(
    launch: str, tmp_path: Path, servers: Callable[..., RunningServer]
) -> None:
    asgi = launch == "uvicorn"
    folder = project(tmp_path / "served", asgi=asgi)
    if launch == "covguard serve":
        live = CovguardServe(["outer:application"], cwd=folder)
        try:
            assert live.get("/").text == "hello"
            assert live.shutdown().status_code == 202
            assert live.wait(timeout=10) == 0, live.stderr
        finally:
            live.stop()
    else:
        port = free_port()
        server = servers(by_hand(launch, port), cwd=folder, port=port).wait_listening()
        assert requests.get(server.url, timeout=10).text == "hello"
        assert server.shutdown().status_code == 202
        assert server.wait(timeout=15) == 0, server.output()
    reference = project(tmp_path / "reference", asgi=asgi)
    coverage_run(reference, "drive.py")  # the same module bodies, run under coverage
    ours, theirs = measured(folder), measured(reference)
    assert ours["entry.py"] == theirs["entry.py"]
    assert ours["outer.py"] == theirs["outer.py"]


def test_an_entry_point_whose_lines_cannot_be_told_is_said_and_not_guessed(
    tmp_path: Path, servers: Callable[..., RunningServer]
) -> None:
    folder = project(tmp_path / "branching")
    (folder / "entry.py").write_text(
        (folder / "entry.py")
        .read_text()
        .replace("import app  # noqa: E402\n", 'if os.environ.get("NOPE"):\n    pass\nimport app\n')
    )
    port = free_port()
    server = servers(by_hand("waitress-serve", port), cwd=folder, port=port).wait_listening()
    assert requests.get(server.url, timeout=10).text == "hello"
    server.signal(signal.SIGINT)
    assert server.wait(timeout=15) == 0, server.output()
    said = [line for line in server.output().splitlines() if "not measured" in line]
    assert len(said) == 1, server.output()
    assert f"{folder / 'entry.py'}: its module-level lines ran before coverage started" in said[0]
    assert "it branches at module level (line 10)" in said[0]
    found = measured(folder)
    assert not found.get("entry.py", (set(), set()))[0], "nothing of it guessed"
    assert found["outer.py"][0] == {1, 2}, "its importer runs straight: measured"
