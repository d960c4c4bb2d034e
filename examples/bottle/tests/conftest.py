"""The live server the end-to-end tests talk to.

Under ``covguard run`` (or ``make demo``) the server is already up and
``COVGUARD_URL`` says where. Run alone (``pytest tests``), the fixture starts
the entry point under waitress itself and stops it through the shutdown route
at the end, so the coverage data is saved either way.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    if os.environ.get("COVGUARD_URL"):
        yield os.environ["COVGUARD_URL"].rstrip("/")
        return
    port = _free_port()
    token = secrets.token_urlsafe(24)
    server = subprocess.Popen(
        [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "wsgi:application"],
        cwd=HERE,
        env={**os.environ, "COVGUARD_TOKEN": token},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the server at {url} did not start (exit {server.poll()})")
            time.sleep(0.05)
    yield url
    requests.post(f"{url}/__shutdown__", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    server.wait(timeout=15)
