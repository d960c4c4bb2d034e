"""``pserve`` and ini files: the Pyramid example's own ``development.ini`` pipeline.

``[filter:covguard] use = egg:wsgi_covguard`` puts the door in the pipeline, and
``pserve covguard+ini:development.ini`` starts coverage before PasteDeploy imports the
app: the lines are ``coverage run``'s around the same ``pserve`` for the same requests,
and the shutdown route stops ``pserve`` (and its reloader with ``--reload``) with exit 0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from live import (
    BIN,
    PYRAMID_EXAMPLE,
    RunningServer,
    browse_example,
    coverage_run_lines,
    free_port,
    measured_lines,
    once_per_run,
    shut_down_for_good,
)

from wsgi_covguard import ConfigError, paste

#: gunicorn reads the ini file with PasteDeploy alone (no plaster loader): coverage starts
#: before it loads the app in a config file of its own, which gunicorn runs first.
GUNICORN_CONFIG = "import wsgi_covguard\n\nwsgi_covguard.start()\n"


def launch_argv(launch: str, port: int) -> list[str]:
    """The launches a Pyramid user has: pserve through the covguard+ini: loader, with its
    reloader (hupper) too, gunicorn --paste (one worker: the example keeps its books in
    memory, and a sync worker serves one request per connection), and hupper's own
    command line."""
    uri = "covguard+ini:development.ini"
    return {
        "pserve": [str(BIN / "pserve"), uri, f"http_port={port}"],
        "pserve --reload": [str(BIN / "pserve"), "--reload", uri, f"http_port={port}"],
        "gunicorn --paste": [str(BIN / "gunicorn"), "-c", "gunicorn_covguard.py", "--paste",
                             "development.ini", "--bind", f"127.0.0.1:{port}"],
        # hupper's own command line around the example's wsgi.py: the same reloader as
        # pserve --reload's, with no ini file.
        "hupper -m waitress": [str(BIN / "hupper"), "-m", "waitress",
                               f"--listen=127.0.0.1:{port}", "wsgi:application"],
    }[launch]  # fmt: skip


LAUNCHES = ["pserve", "pserve --reload", "gunicorn --paste", "hupper -m waitress"]


def pserve(
    servers: Callable[..., RunningServer], folder: Path, uri: str, *flags: str
) -> RunningServer:
    """``pserve [FLAGS] URI`` serving ``folder``'s app, on an ephemeral port (not listening
    yet)."""
    port = free_port()
    argv = [str(BIN / "pserve"), *flags, uri, f"http_port={port}"]
    return servers(argv, cwd=folder, port=port, env={"PYTHONPATH": str(folder)})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, path
    path.write_text(text.replace(old, new, 1))


def browse(url: str) -> None:
    """Every view of the bookshelf."""
    form = {"title": "Dune", "year": "1965"}
    shelf = browse_example(url, form, {"year": "3"}, made="/books/1", api="/api/books")
    assert shelf["books"][0]["title"] == "Dune"


@pytest.fixture(scope="session")
def pserve_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[int]]:
    """The lines ``coverage run`` measures around the same ``pserve`` and ini file (the
    door inert: no token), for :func:`browse`, stopped with Ctrl-C."""

    def measure() -> dict[str, set[int]]:
        folder = tmp_path_factory.mktemp("pserve-reference") / "bookshelf-app"
        shutil.copytree(PYRAMID_EXAMPLE, folder, ignore=shutil.ignore_patterns(".coverage.*"))
        port = free_port()
        command = ["-m", "pyramid.scripts.pserve", "development.ini", f"http_port={port}"]
        env = {"PYTHONPATH": str(folder)}
        return coverage_run_lines(folder, command, port, browse, "bookshelf", env)

    return once_per_run(tmp_path_factory, "pserve-reference", measure)


@pytest.mark.parametrize("launch", LAUNCHES)
def test_pserve_measures_what_coverage_run_measures_and_stops_with_exit_0(
    launch: str,
    bookshelf: Path,
    servers: Callable[..., RunningServer],
    pserve_reference: dict[str, set[int]],
) -> None:
    (bookshelf / "gunicorn_covguard.py").write_text(GUNICORN_CONFIG)
    port = free_port()
    server = servers(launch_argv(launch, port), cwd=bookshelf, port=port,
                     env={"PYTHONPATH": str(bookshelf)}).wait_listening()  # fmt: skip
    browse(server.url)
    shut_down_for_good(server)  # the reloader's worker, gunicorn's workers too
    assert "after PasteDeploy imported the app" not in server.output()
    assert measured_lines(bookshelf, "bookshelf") == pserve_reference


def test_the_filter_alone_comes_after_the_import_says_so_and_takes_its_options(
    bookshelf: Path, servers: Callable[..., RunningServer], pserve_reference: dict[str, set[int]]
) -> None:
    edit(
        bookshelf / "development.ini", "# shutdown_path = /__shutdown__", "shutdown_path = /stop-it"
    )
    edit(
        bookshelf / "development.ini", "# control_prefix = /__coverage__", "control_prefix = /_cov"
    )
    server = pserve(servers, bookshelf, "development.ini").wait_listening()
    bearer = {"Authorization": f"Bearer {server.token}"}
    browse(server.url)
    assert server.get("/_cov/status", headers=bearer).json()["pid"] == server.pid
    assert server.post("/__shutdown__", headers=bearer).status_code == 404  # the app's
    assert server.post("/stop-it", headers=bearer).status_code == 202
    assert server.wait(timeout=20) == 0, server.output()
    assert (
        "coverage started in the ini file's filter, after PasteDeploy imported the app: the"
        " lines its modules ran at import (def, class, decorators) are not measured; serve it"
        " with `pserve covguard+ini:FILE.ini` instead"
    ) in server.output()
    late = measured_lines(bookshelf, "bookshelf")
    missed = pserve_reference["bookshelf/__init__.py"] - late["bookshelf/__init__.py"]
    source = (bookshelf / "bookshelf" / "__init__.py").read_text().splitlines()
    assert source.index("class Shelf:") + 1 in missed  # what the line warned of


@pytest.mark.core_independent
def test_a_token_in_the_ini_file_stops_pserve_in_one_line(
    bookshelf: Path, servers: Callable[..., RunningServer]
) -> None:
    edit(bookshelf / "development.ini", "# drain_timeout = 10", "token = s3cret-in-a-file")
    server = pserve(servers, bookshelf, "covguard+ini:development.ini")
    assert server.wait(timeout=20) == 1
    assert (  # SystemExit's message, printed by the interpreter
        "covguard: [filter:covguard] has a token: an ini file is shared, committed and logged;"
        " remove it there and set COVGUARD_TOKEN in the server's environment"
    ) in server.output().splitlines()
    assert "s3cret-in-a-file" not in server.output()


@pytest.mark.in_process
@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"shutdown-path": "/x"}, "[filter:covguard] does not know 'shutdown-path'; its options"
         " are shutdown_path, control_prefix, drain_timeout (the token: COVGUARD_TOKEN)"),
        ({"drain_timeout": "10s"}, "[filter:covguard] drain_timeout = '10s' is not a number of"
         " seconds (e.g. 10)"),
    ],
)  # fmt: skip
def test_a_filter_option_it_cannot_use_is_named(options: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        paste.filter_factory(lambda environ, start_response: [], {}, **options)
    assert refused.value.message == said


@pytest.mark.in_process
def test_the_filter_reads_its_seconds_as_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVGUARD_TOKEN", raising=False)  # inert: nothing starts here
    app: Callable[..., list[bytes]] = lambda environ, start_response: []  # noqa: E731
    door = paste.filter_factory(app, {}, drain_timeout="2.5")
    assert (door.app, door.drain_timeout) == (app, 2.5)
