"""pytest plugin: run the live server for the end-to-end tests, with coverage.

Inert unless asked: nothing starts until a test requests the ``covguard_server``
fixture, which needs ``--covguard-app APP`` (or the ``covguard_app`` ini option).

- ``covguard_server`` (session scope) starts ``covguard serve APP`` on a free port
  in a subprocess, waits until it listens, and yields an object with ``.url`` and
  ``.token``. At the end of the session it stops the server through the shutdown
  route and waits for it, so its data files are in place before pytest-cov
  combines them. Under pytest-xdist each worker gets its own server.
- ``--covguard-contexts``: the server's dynamic context follows each test's phases,
  ``<node id>|setup``, ``|run`` and ``|teardown`` (the labels of pytest-cov's
  ``--cov-context=test``), so ``coverage html --show-contexts`` shows which
  end-to-end test, and which phase of it, ran each server line: a fixture logging
  in through the app counts for its test's setup. Contexts are process-wide, which
  is why each xdist worker has a server of its own; a request still running when
  the context changes (a browser's late fetch, a thread the test did not wait for)
  has its later lines counted for the next context. The server notes each such
  request, and the terminal summary names them. Under ``covguard run`` the server
  behind ``COVGUARD_URL`` is labelled the same way; one that records no contexts, or a
  run split over xdist workers (they would label one process-wide context in turn), is
  refused in one line: contexts are never silently off.
- ``covguard_url`` (session scope): ``COVGUARD_URL`` when set (under ``covguard
  run``), else ``covguard_server``'s URL. When a server is configured, pytest-playwright's
  ``base_url`` is this one too, unless ``--base-url`` says otherwise.
- ``covguard_chromium`` (ini, or ``$CHROMIUM``): pytest-playwright launches its
  browser from this Chromium (a path or a name on ``PATH``: Debian's ``chromium``),
  with the flags that keep it off the network; its own download is not needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .auth import dashboard_password
from .client import ControlClient
from .errors import ConfigError, CovGuardError
from .impact import (
    MAP_NAME,
    ImpactError,
    Selection,
    data_files_since,
    default_map,
    distrust_of,
    record_files,
    save,
    select,
    work_tree,
)
from .impact import read as read_map
from .servers import DEFAULT_ASGI, DEFAULT_WSGI, SERVERS
from .settings import CONTROL_PREFIX, SHUTDOWN_PATH, TOKEN_ENV, URL_ENV, server_url
from .spawn import serve_argv, spawn

__all__ = ["ControlledServer", "LiveServer", "covguard_server", "covguard_url"]


_SERVER_HELP = (
    f"{' | '.join(SERVERS)} (default: {DEFAULT_WSGI} for a WSGI app, {DEFAULT_ASGI} for an"
    " ASGI one)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("covguard", "live-server coverage (wsgi_covguard)")
    group.addoption("--covguard-app", metavar="APP", help="module:attribute of the app to serve")
    group.addoption("--covguard-server", metavar="NAME", help=_SERVER_HELP)
    group.addoption(
        "--covguard-contexts",
        action="store_true",
        help="label the server's lines with the node id of the test that ran them",
    )
    group.addoption(
        "--covguard-affected",
        nargs="?",
        const="",
        default=None,
        metavar="REF",
        help="run only the tests a change from REF (default: the impact map's commit) to the"
        " work tree can affect, as the impact map says",
    )
    group.addoption(
        "--covguard-map",
        metavar="FILE",
        help=f"the impact map to write (with --covguard-contexts) and read (default: {MAP_NAME}"
        " beside coverage's data file)",
    )
    parser.addini("covguard_app", "module:attribute of the app to serve")
    parser.addini("covguard_server", f"the server for covguard serve: {_SERVER_HELP}")
    parser.addini(
        "covguard_affected_ignore",
        "changed files (glob patterns, from the work tree's root) no end-to-end test can"
        " depend on: --covguard-affected does not run every test for them",
        type="linelist",
    )
    parser.addini(
        "covguard_chromium",
        "launch pytest-playwright's browsers from this Chromium (a path, or a name on PATH;"
        " $CHROMIUM wins), headless and off the network",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Serve ``base_url`` (and a Chromium) when a live server is configured.

    Registered now, after every plugin loaded from its entry point: these fixtures
    take the place of pytest-playwright's (and pytest-base-url's) of the same name,
    while a ``conftest.py`` can still override them.
    """
    if _setting(config, "app") or server_url():
        config.pluginmanager.register(_BaseUrl(), "covguard-base-url")
    if config.getini("covguard_chromium") or os.environ.get(CHROMIUM_ENV):
        config.pluginmanager.register(_Chromium(), "covguard-chromium")
    url = server_url()
    if url and config.getoption("--covguard-contexts"):
        config.stash[_ELSEWHERE] = _labelled_elsewhere(config, url.rstrip("/"))


def _labelled_elsewhere(config: pytest.Config, url: str) -> ControlledServer:
    """The server behind ``COVGUARD_URL``, checked able to take the tests' labels; else a
    one-line refusal (``--covguard-contexts`` never silently labels nothing)."""
    asked = f"--covguard-contexts with {URL_ENV}={url}"
    if getattr(config, "workerinput", None) is None and config.getoption("numprocesses", None):
        raise pytest.UsageError(
            f"{asked}: that one server's context is process-wide, and xdist workers would set"
            " it in turn; run without -n, or let each worker serve its own (covguard_server)"
        )
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise pytest.UsageError(f"{asked}: {TOKEN_ENV} is not set (covguard run sets both)")
    server = ControlledServer(url, token)
    try:
        status = server.control(f"{CONTROL_PREFIX}/status")
    except CovGuardError as exc:
        raise pytest.UsageError(f"{asked}: {exc}") from None
    if not status.get("contexts_supported"):
        raise pytest.UsageError(
            f"{asked}: that server records no contexts (core {status.get('core')}); start it"
            " with `covguard run --contexts`"
        )
    return server


@dataclass
class ControlledServer:
    """A measuring server: where it is, and how to talk to its control routes."""

    url: str
    token: str = field(repr=False)  # failure output shows reprs

    def control(self, path: str, body: bytes | None = None) -> dict[str, object]:
        """GET ``path`` (POST with ``body``); its JSON answer. A 4xx or 5xx raises."""
        client = ControlClient(self.url, self.token)
        method = "POST" if body is not None else "GET"
        answer = client.request(method, path, body, **{"Content-Type": "text/plain"})
        if answer.status >= 400:
            raise CovGuardError(f"{method} {path} answered {answer.status}")
        result: dict[str, object] = json.loads(answer.body)
        return result

    def set_context(self, name: str) -> None:
        """Record the server's lines from now on under the dynamic context ``name``."""
        self.control(f"{CONTROL_PREFIX}/context", name.encode())

    @property
    def dashboard_password(self) -> str:
        """The dashboard's read-only password (any user name): never the token."""
        return dashboard_password(self.token)


@dataclass
class LiveServer(ControlledServer):
    """The server :func:`covguard_server` runs: a :class:`ControlledServer`, and its process."""

    process: subprocess.Popen[str] = field(repr=False, kw_only=True)

    def stop(self) -> int:
        """Stop through the route and wait: the data is saved when this returns."""
        if self.process.poll() is None:
            ControlClient(self.url, self.token).post(SHUTDOWN_PATH)
        return self.process.wait(timeout=60)


#: Seconds the server may take to listen (importing a large app under coverage is slow).
READY_TIMEOUT = 60.0

_SERVER = pytest.StashKey[LiveServer]()
#: The server behind COVGUARD_URL (covguard run), labelled with --covguard-contexts.
_ELSEWHERE = pytest.StashKey[ControlledServer]()
#: The context of the phase running now (``<node id>|<phase>``), with --covguard-contexts.
_PHASE = pytest.StashKey[str]()
#: Requests the servers saw run across a context switch, for the terminal summary:
#: {"count": how many, "shown": the first few, as the servers described them}.
_OVERLAPS = pytest.StashKey[dict[str, Any]]()
#: Lines for the terminal summary (where each server's output went).
_SAID = pytest.StashKey[list[str]]()


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--covguard-{name}") or config.getini(f"covguard_{name}")
    return str(value) if value else None


@pytest.fixture(scope="session")
def covguard_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The app served by ``covguard serve`` under coverage, for the whole session; its
    output (an access log, its own lines) in a file of pytest's temporary folder, named
    at the end, not in each test's captured output."""
    app = _setting(pytestconfig, "app")
    if app is None:
        raise pytest.UsageError(
            "covguard_server needs the app to serve: pass --covguard-app module:app"
            " or set covguard_app in the pytest configuration"
        )
    token = secrets.token_urlsafe(24)
    argv = serve_argv(
        app,
        server=_setting(pytestconfig, "server"),
        # Importable from the project's root as well as from the current folder.
        app_dir=str(pytestconfig.rootpath),
        contexts=pytestconfig.getoption("--covguard-contexts"),
    )
    log_path = tmp_path_factory.getbasetemp() / "covguard-server.log"
    log = log_path.open("a", encoding="utf-8")
    _say_at_the_end(pytestconfig, f"covguard: the server's output is in {log_path}")
    try:
        spawned = spawn(argv, token=token, timeout=READY_TIMEOUT, log=log)
    except ConfigError as exc:
        log.close()
        raise pytest.UsageError(f"covguard serve {app}: {exc}") from None
    server = LiveServer(spawned.url, token, process=spawned.process)
    pytestconfig.stash[_SERVER] = server
    phase = pytestconfig.stash.get(_PHASE, None)
    if phase is not None:  # started by a fixture of this phase: its lines count for it
        server.set_context(phase)
    try:
        yield server
    finally:
        del pytestconfig.stash[_SERVER]
        if pytestconfig.getoption("--covguard-contexts"):
            _keep_overlaps(pytestconfig, server)
        server.stop()
        log.close()


@pytest.fixture(scope="session")
def covguard_url(request: pytest.FixtureRequest) -> str:
    """The live server's URL: ``COVGUARD_URL`` (under ``covguard run``), else the one
    :func:`covguard_server` starts."""
    url = server_url()
    if url:
        return url.rstrip("/")
    server: LiveServer = request.getfixturevalue("covguard_server")
    return server.url


# The fixtures are classmethods: pytest 9 deprecates session fixtures bound to an instance.
class _BaseUrl:
    @pytest.fixture(scope="session")
    @classmethod
    def base_url(cls, request: pytest.FixtureRequest) -> str:
        """``--base-url`` or the ``base_url`` ini value if given, else :func:`covguard_url`."""
        config = request.config
        given = config.getoption("base_url", None)
        with contextlib.suppress(ValueError):  # no plugin registered the ini value
            given = given or config.getini("base_url")
        return str(given) if given else str(request.getfixturevalue("covguard_url"))


#: Where Chromium is, when not on the ``covguard_chromium`` ini value.
CHROMIUM_ENV = "CHROMIUM"
#: Chromium off the network: no updates, sync or first-run checks. ``--no-sandbox``: CI
#: often runs as root, where Chromium's sandbox cannot start.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


class _Chromium:
    @pytest.fixture(scope="session")
    @classmethod
    def browser_type_launch_args(
        cls, browser_type_launch_args: dict[str, Any], pytestconfig: pytest.Config
    ) -> dict[str, Any]:
        """pytest-playwright's launch arguments, with the Chromium configured."""
        name = os.environ.get(CHROMIUM_ENV) or str(pytestconfig.getini("covguard_chromium"))
        chromium = shutil.which(name) or name
        if not os.path.isfile(chromium):
            pytest.fail(
                f"no Chromium at {chromium}: apt-get install chromium, or set {CHROMIUM_ENV}=/path"
            )
        flags = [*browser_type_launch_args.get("args", []), *CHROMIUM_FLAGS]
        return {**browser_type_launch_args, "executable_path": chromium, "args": flags}


def _keep_overlaps(config: pytest.Config, server: LiveServer) -> None:
    status = server.control(f"{CONTROL_PREFIX}/status")
    _add_overlaps(config, {"count": status["overlap_count"], "shown": status["overlaps"]})
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints the summary
        workeroutput["covguard_overlaps"] = config.stash[_OVERLAPS]


def _say_at_the_end(config: pytest.Config, line: str) -> None:
    """``line`` in the terminal summary (an xdist worker's, by the controller)."""
    config.stash.setdefault(_SAID, []).append(line)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["covguard_said"] = config.stash[_SAID]


def _add_overlaps(config: pytest.Config, found: dict[str, Any]) -> None:
    kept = config.stash.setdefault(_OVERLAPS, {"count": 0, "shown": []})
    kept["count"] += found["count"]
    kept["shown"] += found["shown"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under xdist, gather what each worker's server noted, and what --covguard-affected
    chose (every worker collects and chooses alike: the first one's lines are shown)."""
    output = getattr(node, "workeroutput", {})
    found = output.get("covguard_overlaps")
    if found:
        _add_overlaps(node.config, found)
    if output.get("covguard_affected"):
        node.config.stash.setdefault(_AFFECTED_BY_WORKERS, output["covguard_affected"])
    node.config.stash.setdefault(_SAID, []).extend(output.get("covguard_said", []))


def _label_phase(item: pytest.Item, phase: str) -> None:
    """With --covguard-contexts, label the server's lines from now on ``<node id>|<phase>``.

    Hooks rather than fixtures: they run around every test whatever its fixtures,
    and a server that a fixture of this phase starts is labelled as it starts.
    """
    if not item.config.getoption("--covguard-contexts"):
        return
    label = f"{item.nodeid}|{phase}"
    item.config.stash[_PHASE] = label
    stash = item.config.stash
    for server in (stash.get(_SERVER, None), stash.get(_ELSEWHERE, None)):
        if server is not None:
            server.set_context(label)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _label_phase(item, "setup")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    _label_phase(item, "run")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _label_phase(item, "teardown")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Name the requests whose lines may count for the wrong test (contexts are process-wide);
    under xdist, say what --covguard-affected chose (the workers chose it); say where each
    server's output went."""
    for line in config.stash.get(_AFFECTED_BY_WORKERS, []):
        terminalreporter.write_line(line)
    for line in config.stash.get(_SAID, []):
        terminalreporter.write_line(line)
    overlaps = config.stash.get(_OVERLAPS, None)
    if not overlaps or not overlaps["count"]:
        return
    terminalreporter.section("covguard: requests across a context switch", yellow=True)
    terminalreporter.line(
        f"{overlaps['count']} request(s) were still running when the server's context"
        " changed: the lines they ran after it count for the later context. Let each request"
        " finish before its test ends."
    )
    for overlap in overlaps["shown"]:
        terminalreporter.line(
            f"  {overlap['request']} began in {overlap['began']!r}, ended in {overlap['ended']!r}"
        )


# -- the impact map: recorded by a contexts run, read by --covguard-affected -------------------

#: When the session began: the data files written since are this run's servers'.
_BEGAN = pytest.StashKey[float]()
#: What --covguard-affected says after the collection; under xdist, what a worker said.
_AFFECTED = pytest.StashKey[list[str]]()
_AFFECTED_BY_WORKERS = pytest.StashKey[list[str]]()


def _map_path(config: pytest.Config) -> Path:
    given = config.getoption("--covguard-map")
    return Path(given) if given else default_map()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEGAN] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --covguard-affected, keep the tests the change can affect (after -k and -m)."""
    ref = config.getoption("--covguard-affected")
    if ref is None:
        return
    known: set[str] = set()
    source = "no map"
    root = work_tree(config.rootpath)
    try:
        if root is None:
            raise ImpactError(f"{config.rootpath} is not in a git work tree: no change to read")
        impact = read_map(_map_path(config))
        known = set(impact.tests)
        source = f"map from {impact.commit[:12]}" if impact.commit else "map from no commit"
        selection = select(impact, root, ref or None, config.getini("covguard_affected_ignore"))
    except ImpactError as exc:
        selection = Selection(None, everything=str(exc))
    kept, dropped, reasons = [], [], {}
    for item in items:
        why = selection.why(item.nodeid, item.nodeid in known)
        if why is None:
            dropped.append(item)
        else:
            kept.append(item)
            reasons[item.nodeid] = why
    lines = [
        f"covguard: {len(kept)} of {len(items)} end-to-end tests can be affected by the change;"
        f" {len(dropped)} not run ({source})"
    ]
    if selection.everything is not None:
        lines.append(f"covguard: every test runs: {selection.everything}")
    elif config.option.verbose > 0:
        lines += [f"  {test}: {'; '.join(why)}" for test, why in reasons.items()]
    config.stash[_AFFECTED] = lines
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller shows them
        workeroutput["covguard_affected"] = lines
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return config.stash.get(_AFFECTED, [])


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """With --covguard-contexts, write (or extend) the impact map from the data the servers
    this run started saved. Under ``covguard run`` that command writes it."""
    config = session.config
    if (
        not config.getoption("--covguard-contexts")
        or getattr(config, "workerinput", None) is not None
        or server_url()
    ):
        return
    files = data_files_since(config.stash.get(_BEGAN, time.time()))
    if not files:
        return
    overlaps: dict[str, Any] = config.stash.get(_OVERLAPS, {"count": 0, "shown": []})
    shown = [str(overlap["began"]) for overlap in overlaps["shown"] if overlap.get("began")]
    distrust = distrust_of(overlaps["count"], len(overlaps["shown"]))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    root = work_tree(config.rootpath)
    try:
        if root is None:
            raise ImpactError(f"{config.rootpath} is not in a git work tree")
        impact = record_files(
            files, root, unsure=shown, distrust=distrust, test_root=config.rootpath
        )
        path = _map_path(config)
        impact = save(impact, path)
    except (ImpactError, OSError) as exc:
        said = f"covguard: no impact map: {exc}"
    else:
        said = f"covguard: impact map of {len(impact.tests)} tests in {path}"
    if reporter is not None:
        reporter.write_line(said)
