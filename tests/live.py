"""Real servers in subprocesses for the tests: start, wait until they listen, stop.

Every server binds 127.0.0.1 on a free port; every wait is bounded; only
processes started here are signalled, by pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import coverage
import pytest
import requests

from wsgi_covguard import dashboard_password
from wsgi_covguard.prefork import children as workers_of

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FLASK_EXAMPLE = ROOT / "examples" / "flask"
PYRAMID_EXAMPLE = ROOT / "examples" / "pyramid"
TEST_APPS = ROOT / "tests" / "apps"
TOKEN = "test-token-0123456789abcdef"
#: A pytest a test starts (an example's suite, a project of the plugin's tests), with the
#: plugins a user's project has: ours, Playwright's. Not our own tests' hypothesis and Faker:
#: loading them cost 1.3 s of CPU in each of the suite's many runs, for nothing they test.
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
          "-p", "no:hypothesispytest", "-p", "no:faker"]  # fmt: skip
#: Where pre-fork processes put their control sockets (wsgi_covguard.workers).
RUN_DIR = (
    Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"covguard-{os.getuid()}"
)
#: The dashboard's read-only password for TOKEN (any user name): never the token itself.
DASHBOARD = dashboard_password(TOKEN)

#: Runs ``argv[1:]`` with SIGINT at its default, as a terminal starts a command. A suite
#: launched as ``make test &`` hands every child SIGINT ignored; a foreground server
#: stopped with SIGINT (a ``coverage run`` reference, an inert server) would then never stop.
AS_IN_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execvp(sys.argv[1], sys.argv[1:])",
]  # fmt: skip


def free_port() -> int:
    """A port on 127.0.0.1 that no other server of the suite is given meanwhile.

    ``bind(0)`` picks at random among the kernel's ~14000 odd ephemeral ports: one pick
    in 10000 repeated one of the nine before it, and two xdist workers given the same port
    before either server bound it sent one test's requests to the other's server
    (``Connection refused`` once that one stopped). Each worker takes its ports in turn
    from a block of its own below the ephemeral range, skipping those in use.
    """
    global _next_port
    if _next_port == 0:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        first = _PORTS_BELOW - _PORT_BLOCK * (1 + worker % 8)
        _next_port = first + random.randrange(_PORT_BLOCK)  # apart from a concurrent suite
    for _ in range(_PORT_BLOCK):
        port, _next_port = _next_port, _next_port + 1
        if _next_port % _PORT_BLOCK == _PORTS_BELOW % _PORT_BLOCK:
            _next_port -= _PORT_BLOCK  # the block's end: round again
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): the next one
            return port
    raise AssertionError(f"no free port left in this worker's block below {_PORTS_BELOW}")


def _ephemeral_start() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        return int(ports.read().split()[0])


#: Ports under the ephemeral range (32768 by default), 8 blocks of 1500, one per worker.
_PORTS_BELOW = min(_ephemeral_start(), 32768)
_PORT_BLOCK = 1500
_next_port = 0


class RunningServer:
    """A server process, optionally started the way ``cmd &`` in a CI script does.

    With ``background=True`` it is launched by ``sh -c 'cmd &'``: a
    non-interactive shell starts background jobs with SIGINT ignored, exactly
    the trap CI scripts fall into. The shell waits for the job and passes on its
    exit status, so ``wait()`` still reports the server's own. Otherwise it starts
    as from a terminal, SIGINT at its default, however the suite itself was started.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        port: int,
        token: str | None = TOKEN,
        background: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cwd = cwd
        environ = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
        environ.update(env or {})
        if token is not None:
            environ["COVGUARD_TOKEN"] = token
        self.token = token
        self._log_path = cwd / f"server-{port}.log"
        self._log = self._log_path.open("w+b")
        if background:
            # The shell's stdout carries the job's pid; the job writes to the log.
            self.process = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    'log=$1; shift; "$@" >>"$log" 2>&1 & echo $!; wait $!',
                    "sh",
                    str(self._log_path),
                    *argv,
                ],
                cwd=cwd,
                env=environ,
                stdout=subprocess.PIPE,
                stderr=self._log,
                stdin=subprocess.DEVNULL,
            )
            assert self.process.stdout is not None
            self.pid = int(self.process.stdout.readline())
        else:
            self.process = subprocess.Popen(
                [*AS_IN_A_TERMINAL, *argv],
                cwd=cwd,
                env=environ,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            self.pid = self.process.pid

    def wait_listening(self, timeout: float = 20.0) -> RunningServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server not listening after {timeout}s:\n{self.output()}")

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def shutdown(self, token: str | None = None) -> requests.Response:
        bearer = token or self.token
        return self.post("/__shutdown__", headers={"Authorization": f"Bearer {bearer}"})

    def wait(self, timeout: float = 5.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tail = self.output()[-3000:]
            raise AssertionError(f"still running after {timeout:g}s; its output:\n{tail}") from None

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Teardown: end the server if a test left it running, and the workers it started
        (by pid, from /proc: a worker outlives its killed master, orphaned)."""
        if self.process.poll() is None:
            kill_tree(self.pid)
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and the processes it started, and remove the control sockets they
    could not (a pre-fork process's ``<pid>.sock``): teardown leaves nothing behind."""
    for each in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)
        (RUN_DIR / f"{each}.sock").unlink(missing_ok=True)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux: /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = [int(child) for child in text.split()]
    return found + [grand for child in found for grand in descendants(child)]


def server_argv(name: str, port: int, module: str = "wsgi") -> list[str]:
    """How a user starts each server on the entry point ``<module>.py``."""
    py = sys.executable
    listen = f"127.0.0.1:{port}"
    run_simple = (
        f"import {module}; from werkzeug.serving import run_simple;"
        f" run_simple('127.0.0.1', {port}, {module}.application, threaded={{}})"
    )
    wsgiref = (
        f"import {module}; from wsgiref.simple_server import make_server;"
        f" make_server('127.0.0.1', {port}, {module}.application).serve_forever()"
    )
    commands = {
        "waitress-serve": [
            str(BIN / "waitress-serve"),
            f"--listen={listen}",
            f"{module}:application",
        ],
        "waitress.serve": [
            py,
            "-c",
            f"import {module}, waitress; waitress.serve({module}.application, listen='{listen}')",
        ],
        "werkzeug-threaded": [py, "-c", run_simple.format(True)],
        "werkzeug": [py, "-c", run_simple.format(False)],
        "flask-run": [
            str(BIN / "flask"),
            "--app",
            f"{module}:app",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "wsgiref": [py, "-c", wsgiref],
    }
    return commands[name]


def data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(".coverage.*") if p.is_file())


@contextlib.contextmanager
def read_data(path: Path) -> Iterator[coverage.CoverageData]:
    """A coverage data file, read, and closed afterwards (Python 3.13 warns otherwise)."""
    data = coverage.CoverageData(basename=str(path))
    try:
        data.read()
        yield data
    finally:
        data.close(force=True)


def measured_lines(folder: Path, package: str) -> dict[str, set[int]]:
    """Combine the folder's parallel data files; lines per file of ``package``.

    Files are named from the package on (``taskboard/store.py``), wherever the
    package lives.
    """
    files = data_files(folder)
    assert files, f"no coverage data file in {folder}"
    lines: dict[str, set[int]] = {}
    for path in files:
        with read_data(path) as part:
            for name in part.measured_files():
                parts = Path(name).parts
                for i, piece in enumerate(parts):
                    if piece in (package, f"{package}.py"):
                        key = "/".join(parts[i:])
                        lines.setdefault(key, set()).update(part.lines(name) or ())
                        break
    return lines


class CovguardServe:
    """``covguard serve`` in a subprocess; the URL comes from its ready line.

    Its stderr is read all along (a server logging every request would block on
    a full pipe otherwise); ``stderr`` holds it once the process has ended.
    """

    def __init__(
        self,
        args: list[str],
        *,
        cwd: Path,
        token: str | None = TOKEN,
        timeout: float = 30,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in (env or os.environ).items() if not k.startswith("COVGUARD_")}
        if token is not None:
            env["COVGUARD_TOKEN"] = token
        self.token = token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wsgi_covguard", "serve", "--port", "0", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self.process.pid
        self.stderr = ""
        self._stderr_lines: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stderr, self._stderr_lines)),
        ]
        self._readers[0].start()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        self.ready_line = self.process.stdout.readline() if ready else ""
        self._readers.append(threading.Thread(target=self._collect, args=(self.process.stdout, [])))
        self._readers[1].start()
        if not self.ready_line.startswith("covguard: serving"):
            self.stop()
            raise AssertionError(f"no ready line, got {self.ready_line!r}; stderr:\n{self.stderr}")
        self.url = self.ready_line.split(" on ")[1].split()[0]

    @staticmethod
    def _collect(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def stderr_lines(self) -> list[str]:
        """What the server wrote to stderr so far."""
        return list(self._stderr_lines)

    def output(self) -> str:
        """What the server wrote to stderr so far, as :meth:`RunningServer.output`."""
        return "".join(self._stderr_lines)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def shutdown(self) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.post(self.url + "/__shutdown__", headers=headers, timeout=10)

    def wait(self, timeout: float = 5.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # as RunningServer.wait: say where it stood
            tail = self.output()[-3000:]
            raise AssertionError(f"still running after {timeout:g}s; its output:\n{tail}") from None
        self._close()
        return code

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=10)
        self.stderr = "".join(self._stderr_lines)
        if any(reader.is_alive() for reader in self._readers):
            return  # a process we did not end holds the pipes: closing would block on them
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        """Teardown: end the server if a test left it running, and the workers it started
        (by pid, from /proc: an orphaned worker would hold its output pipes open)."""
        if self.process.poll() is None:
            kill_tree(self.pid)
            self.process.wait(timeout=10)
        self._close()


HTTPBIN_COVERAGERC = "[run]\nsource_pkgs = httpbin\n"

#: A user's entry point for httpbin, as the README writes it.
HTTPBIN_ENTRY = """\
import wsgi_covguard
wsgi_covguard.start()
from httpbin import app
application = wsgi_covguard.CovGuard(app)
"""

#: Debian's Chromium, headless, kept off the network (CI runs as root: no sandbox).
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def drive_httpbin(get: Callable[[str], requests.Response], rounds: int = 1) -> None:
    """The same workload on httpbin whatever the server: its lines do not depend on which
    process or thread answers."""
    for _ in range(rounds):
        assert get("/get?x=1").json()["args"] == {"x": "1"}
        assert get("/status/418").status_code == 418
        assert get("/headers").status_code == 200
        assert get("/base64/aGVsbG8=").text == "hello"
        assert get("/nope").status_code == 404


def coverage_run_lines(
    folder: Path,
    command: list[str],
    port: int,
    drive: Callable[[str], None],
    package: str,
    env: dict[str, str] | None = None,
) -> dict[str, set[int]]:
    """The lines ``coverage run -p COMMAND`` (a server listening on ``port``) measures of
    ``package`` for ``drive(url)``, stopped with Ctrl-C as from a terminal."""
    argv = [sys.executable, "-m", "coverage", "run", "-p", *command]
    server = RunningServer(argv, cwd=folder, port=port, token=None, background=False, env=env)
    try:
        drive(server.wait_listening(timeout=30).url)
        server.signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0, server.output()
    finally:
        server.stop()
    return measured_lines(folder, package)


def coverage_run_reference(
    folder: Path, app: str, drive: Callable[[str], None], package: str
) -> dict[str, set[int]]:
    """The lines ``coverage run`` measures around single-process waitress for ``drive(url)``."""
    port = free_port()
    command = ["-m", "waitress", f"--listen=127.0.0.1:{port}", app]
    return coverage_run_lines(folder, command, port, drive, package)


def browse_example(
    url: str,
    form: dict[str, str],
    wrong: dict[str, str],
    *,
    made: str,
    api: str,
    session: requests.Session | None = None,
) -> Any:
    """What a user does with one of the examples (a list with a form, an item page, a JSON
    API): the list, the form ``wrong`` (400) and right (redirected to ``made``), a page
    that does not exist (404); the API's answer."""
    client = session or requests.Session()
    assert client.get(url + "/", timeout=10).status_code == 200
    assert client.post(url + "/", data={**form, **wrong}, timeout=10).status_code == 400
    added = client.post(url + "/", data=form, timeout=10)
    assert added.url.endswith(made), added.url
    assert client.get(url + made.rstrip("0123456789") + "9", timeout=10).status_code == 404
    return client.get(url + api, timeout=10).json()


def shut_down_for_good(server: RunningServer, timeout: float = 20) -> None:
    """The shutdown route stops the server and every process it started, with exit 0."""
    processes = [server.pid, *descendants(server.pid)]  # a reloader's child, workers
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=timeout) == 0, server.output()
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]


@contextlib.contextmanager
def _run_wide(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """The folder every xdist worker of this run shares (their base temps' parent), with
    ``name``'s lock held: the first to come makes the thing, the others find it made."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = factory.getbasetemp().parent if worker else factory.getbasetemp()
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield shared


def once_per_run(
    factory: pytest.TempPathFactory, name: str, measure: Callable[[], dict[str, set[int]]]
) -> dict[str, set[int]]:
    """``measure()`` once for the whole run, whatever the xdist workers: the first to ask
    measures and leaves the lines in the run's temporary folder for the others (a
    ``coverage run`` reference is seconds of CPU; four workers made it four times)."""
    with _run_wide(factory, name) as shared:
        kept = shared / f"{name}.json"
        if kept.exists():
            return {path: set(lines) for path, lines in json.loads(kept.read_text()).items()}
        lines = measure()
        kept.write_text(json.dumps({path: sorted(found) for path, found in lines.items()}))
        return lines


def tree_once_per_run(
    factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """A folder ``make(folder)`` fills once for the whole run; each caller gets a copy of
    its own to change (a recorded browser suite is tens of seconds: made once, its cases
    then run on every worker, not in one worker's line)."""
    with _run_wide(factory, name) as shared:
        kept = shared / name
        if not kept.exists():
            making = shared / f"{name}.making"  # a make that failed leaves nothing to find
            shutil.rmtree(making, ignore_errors=True)
            making.mkdir()
            make(making)
            making.rename(kept)
    mine = factory.mktemp(name) / kept.name
    shutil.copytree(kept, mine, symlinks=True)
    return mine


def wait_in_flight(url: str, count: int, token: str = TOKEN, timeout: float = 10) -> None:
    """Wait until the server at ``url`` has ``count`` requests in flight (its status route)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        status = requests.get(f"{url}/__coverage__/status", headers=headers, timeout=10).json()
        if status["in_flight"] == count:
            return
        assert time.monotonic() < deadline, f"in flight: {status['in_flight']}, not {count}"
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """The pids of a process's children (gunicorn's workers), from /proc."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def wait_workers_measuring(
    server: RunningServer | CovguardServe, count: int, timeout: float = 20
) -> list[int]:
    """Wait until the master ``server`` has ``count`` workers, each measuring with its door
    open (its control socket): a worker still forking or booting when a signal comes has
    not begun (seen on a busy machine). Returns their pids."""
    deadline = time.monotonic() + timeout
    while True:
        workers = workers_of(server.pid)  # not multiprocessing's resource tracker
        if len(workers) >= count and all((RUN_DIR / f"{pid}.sock").exists() for pid in workers):
            return workers
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
