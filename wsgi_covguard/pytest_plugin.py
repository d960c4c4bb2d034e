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
  request, and the terminal summary names them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .client import ControlClient
from .errors import CovGuardError

__all__ = ["LiveServer"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("covguard", "live-server coverage (wsgi_covguard)")
    group.addoption("--covguard-app", metavar="APP", help="module:attribute of the app to serve")
    group.addoption("--covguard-server", metavar="NAME", help="waitress (default), werkzeug, ...")
    group.addoption(
        "--covguard-contexts",
        action="store_true",
        help="label the server's lines with the node id of the test that ran them",
    )
    parser.addini("covguard_app", "module:attribute of the app to serve")
    parser.addini("covguard_server", "the server for covguard serve (default: waitress)")


@dataclass
class LiveServer:
    """The running server: where it is, and how to talk to its control routes."""

    url: str
    token: str = field(repr=False)  # failure output shows reprs
    process: subprocess.Popen[str]

    def control(self, path: str, body: bytes | None = None) -> dict[str, object]:
        """GET ``path`` (POST with ``body``); its JSON answer. A 4xx or 5xx raises."""
        client = ControlClient(self.url, self.token)
        method = "POST" if body is not None else "GET"
        answer = client.request(method, path, body, **{"Content-Type": "text/plain"})
        if answer.status >= 400:
            raise CovGuardError(f"covguard: {method} {path} answered {answer.status}")
        result: dict[str, object] = json.loads(answer.body)
        return result

    def set_context(self, name: str) -> None:
        self.control("/__coverage__/context", name.encode())

    def stop(self) -> int:
        """Stop through the route and wait: the data is saved when this returns."""
        if self.process.poll() is None:
            ControlClient(self.url, self.token).post("/__shutdown__")
        return self.process.wait(timeout=60)


_SERVER = pytest.StashKey[LiveServer]()
#: The context of the phase running now (``<node id>|<phase>``), with --covguard-contexts.
_PHASE = pytest.StashKey[str]()
#: Requests the servers saw run across a context switch, for the terminal summary:
#: {"count": how many, "shown": the first few, as the servers described them}.
_OVERLAPS = pytest.StashKey[dict[str, Any]]()


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--covguard-{name}") or config.getini(f"covguard_{name}")
    return str(value) if value else None


@pytest.fixture(scope="session")
def covguard_server(pytestconfig: pytest.Config) -> Iterator[LiveServer]:
    """The app served by ``covguard serve`` under coverage, for the whole session."""
    app = _setting(pytestconfig, "app")
    if app is None:
        raise pytest.UsageError(
            "covguard_server needs the app to serve: pass --covguard-app module:app"
            " or set covguard_app in the pytest configuration"
        )
    token = secrets.token_urlsafe(24)
    argv = [sys.executable, "-m", "wsgi_covguard", "serve", app, "--port", "0"]
    # Importable from the project's root as well as from the current folder.
    argv += ["--app-dir", str(pytestconfig.rootpath)]
    argv += ["--server", _setting(pytestconfig, "server") or "waitress"]
    if pytestconfig.getoption("--covguard-contexts"):
        argv.append("--contexts")
    process = subprocess.Popen(
        argv,
        env={**os.environ, "COVGUARD_TOKEN": token},
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()  # the ready line, or "" if it died first
    if " on http" not in ready:
        process.wait(timeout=30)
        raise pytest.UsageError(
            f"covguard serve {app} exited with status {process.returncode} before listening;"
            " see its output above"
        )
    server = LiveServer(url=ready.split(" on ")[1].split()[0], token=token, process=process)
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
        process.stdout.close()


def _keep_overlaps(config: pytest.Config, server: LiveServer) -> None:
    status = server.control("/__coverage__/status")
    _add_overlaps(config, {"count": status["overlap_count"], "shown": status["overlaps"]})
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints the summary
        workeroutput["covguard_overlaps"] = config.stash[_OVERLAPS]


def _add_overlaps(config: pytest.Config, found: dict[str, Any]) -> None:
    kept = config.stash.setdefault(_OVERLAPS, {"count": 0, "shown": []})
    kept["count"] += found["count"]
    kept["shown"] += found["shown"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under xdist, gather what each worker's server noted."""
    found = getattr(node, "workeroutput", {}).get("covguard_overlaps")
    if found:
        _add_overlaps(node.config, found)


def _label_phase(item: pytest.Item, phase: str) -> None:
    """With --covguard-contexts, label the server's lines from now on ``<node id>|<phase>``.

    Hooks rather than fixtures: they run around every test whatever its fixtures,
    and a server that a fixture of this phase starts is labelled as it starts.
    """
    if not item.config.getoption("--covguard-contexts"):
        return
    label = f"{item.nodeid}|{phase}"
    item.config.stash[_PHASE] = label
    server = item.config.stash.get(_SERVER, None)
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
    """Name the requests whose lines may count for the wrong test (contexts are process-wide)."""
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
