"""The live server the end-to-end tests talk to.

Under ``covguard run`` (or ``make demo``) the server is already up and
``COVGUARD_URL`` says where. Run alone (``pytest tests``), wsgi_covguard's pytest
plugin serves ``covguard_app`` from pytest.ini for the session and stops it through
the shutdown route at the end, so the coverage data is saved either way.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    if os.environ.get("COVGUARD_URL"):
        return os.environ["COVGUARD_URL"].rstrip("/")
    return str(request.getfixturevalue("covguard_server").url)
