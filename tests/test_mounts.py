"""The control routes under an ASGI mount point (``root_path``), as users mount apps.

uvicorn and hypercorn ``--root-path`` (the proxy in front takes the prefix off, the server
puts it back in ``path``) and Starlette's ``Mount`` (the client asks for the prefix): the
control routes answer, and the app never gets a control request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import BIN, TOKEN, RunningServer, free_port

#: What these check is the door's and the server's, the same on every core: one Python.
pytestmark = pytest.mark.core_independent

MOUNTED = """\
import wsgi_covguard
wsgi_covguard.start()
import notesapi
from starlette.applications import Starlette
from starlette.routing import Mount

app = Starlette(routes=[Mount("/prefix", app=wsgi_covguard.CovGuardASGI(notesapi.api))])
"""

#: server -> (argv for a port, the prefix the client writes in front of each path).
MOUNTS: dict[str, tuple[Callable[[int], list[str]], str]] = {
    "uvicorn --root-path": (lambda port: [str(BIN / "uvicorn"), "notes_entry:app", "--host",
                            "127.0.0.1", "--port", str(port), "--root-path", "/prefix"], ""),
    "hypercorn --root-path": (lambda port: [str(BIN / "hypercorn"), "notes_entry:app",
                              "--bind", f"127.0.0.1:{port}", "--root-path", "/prefix"], ""),
    "Starlette Mount, uvicorn": (lambda port: [str(BIN / "uvicorn"), "mounted:app", "--host",
                                 "127.0.0.1", "--port", str(port)], "/prefix"),
}  # fmt: skip


@pytest.mark.parametrize("mount", MOUNTS)
def test_the_control_routes_answer_under_a_mount_point(
    mount: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    (plainapp / "mounted.py").write_text(MOUNTED)
    argv, prefix = MOUNTS[mount]
    port = free_port()
    live = servers(argv(port), cwd=plainapp, port=port).wait_listening()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert live.get(f"{prefix}/hello").json() == {"hello": "world"}, "the app, mounted"
    status = requests.get(f"{live.url}{prefix}/__coverage__/status", headers=bearer, timeout=10)
    assert status.status_code == 200, status.text  # ours: the app would answer 404
    assert status.json()["measuring"] is True
    refused = live.post(f"{prefix}/__shutdown__")  # no token: ours still, never the app's
    assert refused.status_code == 403, refused.text
    assert "Bearer" in refused.json()["error"]
    assert live.post(f"{prefix}/__shutdown__", headers=bearer).status_code == 202
    assert live.wait(timeout=20) == 0, live.output()
    assert "Traceback" not in live.output()
