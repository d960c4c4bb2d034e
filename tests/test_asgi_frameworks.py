"""Each ASGI framework behind the same three-line entry point, under uvicorn started as a CI
script does: the route answers, the shutdown answers 202, the process exits 0, and the lines
saved equal ``coverage run``'s (``[run] sigterm = true``) for the same requests. FastAPI has
its own tests and example (``test_asgi.py``, ``examples/fastapi``), Django its ``asgi.py``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import RunningServer, data_files, free_port, measured_lines

PY = sys.executable

APPS = {
    "starlette": """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello")


async def never(request):
    return PlainTextResponse("never")  # no test asks for it


app = Starlette(routes=[Route("/hello", hello), Route("/never", never)])
""",
    "quart": """
from quart import Quart

app = Quart(__name__)


@app.get("/hello")
async def hello():
    return "hello"


@app.get("/never")
async def never():
    return "never"  # no test asks for it
""",
    "litestar": """
from litestar import Litestar, get


@get("/hello")
async def hello() -> str:
    return "hello"


@get("/never")
async def never() -> str:
    return "never"  # no test asks for it


app = Litestar([hello, never])
""",
}
ENTRY = """import wsgi_covguard
wsgi_covguard.start()
import {module}
app = wsgi_covguard.CovGuardASGI({module}.app)
"""


def uvicorn(app: str, port: int) -> list[str]:
    return [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


@pytest.mark.parametrize("framework", list(APPS))
def test_the_three_line_entry_point_measures_what_coverage_run_measures(
    framework: str, tmp_path: Path, servers: Callable[..., RunningServer]
) -> None:
    module = f"{framework}_app"
    measured, alone = tmp_path / "measured", tmp_path / "alone"
    for folder in (measured, alone):
        folder.mkdir()
        (folder / f"{module}.py").write_text(APPS[framework])
        (folder / ".coveragerc").write_text(f"[run]\nsource = .\ninclude = {module}.py\n")
    (measured / "entry.py").write_text(ENTRY.format(module=module))
    with (alone / ".coveragerc").open("a") as rc:
        rc.write("sigterm = true\n")

    port = free_port()
    server = servers(uvicorn("entry:app", port), cwd=measured, port=port).wait_listening()
    assert requests.get(f"{server.url}/hello", timeout=10).text == "hello"
    assert requests.post(f"{server.url}/__shutdown__", timeout=10).status_code == 403
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=5) == 0, server.output()
    assert len(data_files(measured)) == 1

    port = free_port()
    argv = [PY, "-m", "coverage", "run", "-p", *uvicorn(f"{module}:app", port)[1:]]
    reference = servers(argv, cwd=alone, port=port, token=None).wait_listening()
    assert requests.get(f"{reference.url}/hello", timeout=10).text == "hello"
    reference.signal(signal.SIGTERM)
    reference.wait(timeout=10)

    lines = measured_lines(measured, module)
    assert lines == measured_lines(alone, module)
    source = (measured / f"{module}.py").read_text().splitlines()
    never = next(i for i, text in enumerate(source, 1) if "no test asks for it" in text)
    assert never not in lines[f"{module}.py"], "the control requests reached no app line"
