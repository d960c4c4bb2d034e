"""``python manage.py runserver``: the Django example served by Django's own development
server, and by daphne's when ``daphne`` is in ``INSTALLED_APPS`` (Django's ASGI runserver).

``manage.py`` starts coverage before Django imports the project (runserver's system checks
import every URLconf and view before the server loads ``WSGI_APPLICATION``), and the
entry points wrap the app as for any server. The shutdown route stops the server (and its
autoreloader parent) with exit 0; the lines are ``coverage run``'s around ``runserver
--noreload`` for the same requests.
"""

from __future__ import annotations

import functools
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import (
    ROOT,
    RunningServer,
    browse_example,
    coverage_run_lines,
    free_port,
    measured_lines,
    once_per_run,
    shut_down_for_good,
)

DJANGO_EXAMPLE = ROOT / "examples" / "django"
#: How a Django team starts it: with the autoreloader (a parent that restarts a serving
#: child on each change), or without.
LAUNCHES = {"runserver": [], "runserver --noreload": ["--noreload"]}
#: Django's own WSGI runserver, and daphne's ASGI one (``daphne`` first in INSTALLED_APPS).
SETTINGS = {"wsgi": "recipes.settings", "daphne": "recipes.settings_daphne"}
DAPHNE_SETTINGS = """\
from .settings import *  # noqa: F403

INSTALLED_APPS = ["daphne", *INSTALLED_APPS]  # noqa: F405
"""


def copy(folder: Path) -> Path:
    """The Django example, with the settings that make runserver daphne's."""
    shutil.copytree(
        DJANGO_EXAMPLE, folder, ignore=shutil.ignore_patterns(".coverage.*", "__pycache__")
    )
    (folder / "recipes" / "settings_daphne.py").write_text(DAPHNE_SETTINGS)
    return folder


def argv(port: int, *flags: str, head: tuple[str, ...] = (sys.executable,)) -> list[str]:
    return [*head, "manage.py", "runserver", *flags, f"127.0.0.1:{port}"]


def browse(url: str) -> None:
    """Every view of the recipes, the form with its CSRF token."""
    session = requests.Session()
    found = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(url, timeout=10).text
    )
    assert found, "the form has its CSRF token"
    form = {"csrfmiddlewaretoken": found[1], "name": "Soup", "minutes": "30"}
    made, api = "/recipes/1", "/api/recipes"
    listed = browse_example(url, form, {"minutes": "0"}, made=made, api=api, session=session)
    assert listed["recipes"][0]["name"] == "Soup"


@pytest.fixture(scope="session")
def runserver_reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, set[int]]]:
    """The lines ``coverage run manage.py runserver --noreload`` measures for
    :func:`browse` (the door inert: no token), stopped with Ctrl-C, for each runserver."""

    def measure(door: str) -> dict[str, set[int]]:
        folder = copy(tmp_path_factory.mktemp(f"runserver-reference-{door}") / "recipes-app")
        port = free_port()
        command = argv(port, "--noreload", head=())
        env = {"DJANGO_SETTINGS_MODULE": SETTINGS[door]}
        return coverage_run_lines(folder, command, port, browse, "recipes", env)

    return {
        door: once_per_run(tmp_path_factory, f"runserver-{door}", functools.partial(measure, door))
        for door in SETTINGS
    }


@pytest.mark.parametrize("door", list(SETTINGS))
@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_runserver_measures_what_coverage_run_measures_and_stops_with_exit_0(
    launch: str,
    door: str,
    tmp_path: Path,
    servers: Callable[..., RunningServer],
    runserver_reference: dict[str, dict[str, set[int]]],
) -> None:
    folder = copy(tmp_path / "recipes-app")
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS[door]}
    server = servers(argv(port, *LAUNCHES[launch]), cwd=folder, port=port, env=env)
    browse(server.wait_listening(timeout=30).url)
    shut_down_for_good(server)  # the autoreloader's child too
    assert measured_lines(folder, "recipes") == runserver_reference[door]
