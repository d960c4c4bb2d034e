"""The live server and the browser the end-to-end tests use.

Under ``covguard run`` (or ``make demo``) the server is already up and
``COVGUARD_URL`` says where. Run alone (``pytest tests``), wsgi_covguard's pytest
plugin serves ``covguard_app`` from pytest.ini for the session and stops it through
the shutdown route at the end, so the coverage data is saved either way.

The browser is Debian's Chromium (``apt-get install chromium``), driven headless by
Playwright through ``executable_path``: Playwright's own browser download is not
needed. ``CHROMIUM`` points elsewhere; without a browser the tests fail, saying so.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    if os.environ.get("COVGUARD_URL"):
        return os.environ["COVGUARD_URL"].rstrip("/")
    return str(request.getfixturevalue("covguard_server").url)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.fail(f"no Chromium at {chromium}: apt-get install chromium, or set CHROMIUM=/path")
    # --no-sandbox: CI runs as root; the rest keeps Chromium off the network.
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    return {**browser_type_launch_args, "executable_path": chromium, "args": flags}
