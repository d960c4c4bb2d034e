"""wsgi_covguard's overhead, measured side by side: ``make bench``.

Every figure is a median of rounds interleaved A B, B A in one run, on the Flask example
(pages, templates, JSON) served by waitress with 4 threads, and for ASGI on a FastAPI hello
and the FastAPI example (Shortlinks) served by uvicorn, loaded by wrk in another process,
all on 127.0.0.1. It prints ratios and the figures behind them; it checks nothing against
a threshold (the goals are in the README).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a local benchmark's token)
PY311 = ROOT / ".venv" / "bin" / "python"
PY313 = ROOT / ".venv-3.13" / "bin" / "python"
BARE = "from taskboard import create_app\napplication = create_app()\n"
HELLO = (
    "from fastapi import FastAPI\napp = FastAPI()\n\n\n"
    '@app.get("/")\ndef hello() -> dict[str, str]:\n    return {"hello": "world"}\n'
)
HELLO_MEASURED = (
    "import wsgi_covguard\nwsgi_covguard.start()\nimport hello\n"
    "app = wsgi_covguard.CovGuardASGI(hello.app)\n"
)
SHORTLINKS_BARE = "from shortlinks import create_app\napp = create_app()\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process on 127.0.0.1, started and ended by us (by pid)."""

    def __init__(
        self, argv: list[str], cwd: Path, port: int, token: bool, core: str | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
        if token:
            env["COVGUARD_TOKEN"] = TOKEN
        if core is not None:
            env["COVERAGE_CORE"] = core
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv} did not start") from None
                time.sleep(0.05)

    def shutdown(self) -> float:
        """POST the route; seconds until the process is gone."""
        request = urllib.request.Request(
            self.url + "/__shutdown__", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10):
            pass
        self.process.wait(timeout=30)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM, not SIGINT: `make bench &` hands the servers SIGINT ignored.
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wrk(url: str, seconds: int, script: str | None = "paths.lua") -> float:
    """Requests per second from wrk, one thread, four connections, over ``script``'s paths
    (None: the root alone)."""
    paths = ["-s", str(Path(__file__).with_name(script))] if script else []
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", *paths, url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match[1])


def waitress(python: Path, entry: str, port: int, *, under_coverage: bool = False) -> list[str]:
    head = (
        [str(python), "-m", "coverage", "run", "-p", "-m"]
        if under_coverage
        else [str(python), "-m"]
    )
    return [*head, "waitress", f"--listen=127.0.0.1:{port}", "--threads=4", f"{entry}:application"]


def uvicorn(python: Path, entry: str, port: int, *, under_coverage: bool = False) -> list[str]:
    head = (
        [str(python), "-m", "coverage", "run", "-p", "-m"]
        if under_coverage
        else [str(python), "-m"]
    )
    return [*head, "uvicorn", entry, "--port", str(port), "--no-access-log"]


def throughput(
    app: Path,
    configs: dict[str, Callable[[int], tuple[list[str], bool]]],
    rounds: int,
    seconds: int,
    script: str | None = "paths.lua",
    *,
    cores: dict[str, str] | None = None,
    switching: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """Median req/s of each config, interleaved A B, B A, A B... so neither always goes first;
    ``cores``: a config's COVERAGE_CORE; ``switching``: the configs whose context is switched
    every 0.1 s while wrk runs (a browser suite's tests, ten a second)."""
    results: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(rounds):
        order = list(configs.items())
        for name, make in order if round_ % 2 == 0 else reversed(order):
            port = free_port()
            argv, token = make(port)
            server = Server(argv, app, port, token, (cores or {}).get(name))
            try:
                wrk(server.url, 1, script)  # warm up: imports, template compilation
                with contexts_switched(server.url, on=name in switching):
                    results[name].append(wrk(server.url, seconds, script))
            finally:
                server.stop()
    return {name: statistics.median(values) for name, values in results.items()}


@contextlib.contextmanager
def contexts_switched(url: str, *, on: bool, every: float = 0.1) -> Iterator[None]:
    """The server's dynamic context switched every ``every`` seconds through its route."""
    if not on:
        yield
        return
    done = threading.Event()
    switches = []

    def switch() -> None:
        while not done.wait(every):
            request = urllib.request.Request(
                f"{url}/__coverage__/context", data=f"test {len(switches)}".encode(),
                method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as answer:
                switches.append(answer.status)

    thread = threading.Thread(target=switch)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    assert switches, "no switch in the whole run"
    assert set(switches) == {200}, switches


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_suite(
    app: Path,
    tests: Path,
    configs: dict[str, Callable[[int], tuple[list[str], bool]]],
    rounds: int,
    *,
    cores: dict[str, str],
    labelled: frozenset[str],
) -> dict[str, tuple[float, float]]:
    """Median seconds of the example's browser suite (pytest, Debian's Chromium) against each
    config's server, and median CPU seconds the server spent over it; interleaved as above.
    ``labelled``: the configs whose tests each set their context (``--covguard-contexts``)."""
    walls: dict[str, list[float]] = {name: [] for name in configs}
    cpus: dict[str, list[float]] = {name: [] for name in configs}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    env["COVGUARD_TOKEN"] = TOKEN
    for round_ in range(rounds):
        order = list(configs.items())
        for name, make in order if round_ % 2 == 0 else reversed(order):
            port = free_port()
            argv, token = make(port)
            server = Server(argv, app, port, token, cores.get(name))
            try:
                wrk(server.url, 1)  # warm up, as for the throughput rows
                before, started = cpu_seconds(server.process.pid), time.monotonic()
                subprocess.run(
                    [str(PY313), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
                     *(["--covguard-contexts"] if name in labelled else [])],
                    cwd=tests.parent, env={**env, "COVGUARD_URL": server.url},
                    capture_output=True, text=True, check=True, timeout=300,
                )  # fmt: skip
                walls[name].append(time.monotonic() - started)
                cpus[name].append(cpu_seconds(server.process.pid) - before)
            finally:
                server.stop()
    return {
        name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in configs
    }


def shutdown_seconds(app: Path, make: Callable[[int], list[str]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        port = free_port()
        server = Server(make(port), app, port, token=True)
        try:
            wrk(server.url, 1)
            times.append(server.shutdown())
        finally:
            server.stop()
    return statistics.median(times)


COST = """
import timeit, wsgi_covguard
session = wsgi_covguard.start()  # None without a token: the inert case
if session is not None:
    session.coverage.stop()  # measure the middleware, not the tracer
    # As while measuring, where this thread has its tracer: no hand-over to try.
    session.traces_threads = False
def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
guard = wsgi_covguard.CovGuard(app)
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1"}
def call(handler):
    body = handler(environ, lambda status, headers: None)
    for chunk in body: pass
    if hasattr(body, "close"): body.close()
n = 200_000
bare = min(timeit.repeat(lambda: call(app), number=n, repeat=5)) / n * 1e6
wrapped = min(timeit.repeat(lambda: call(guard), number=n, repeat=5)) / n * 1e6
print(bare, wrapped)
"""


COST_ASGI = """
import asyncio, time, wsgi_covguard
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
guard = wsgi_covguard.CovGuardASGI(app)  # no token: inert
assert not guard.enabled
scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("127.0.0.1", 1)}
async def receive(): return {"type": "http.request", "body": b""}
async def send(message): pass
async def calls(handler, n):
    began = time.perf_counter()
    for _ in range(n):
        await handler(scope, receive, send)
    return (time.perf_counter() - began) / n * 1e6
n = 200_000
bare = min(asyncio.run(calls(app, n)) for _ in range(5))
wrapped = min(asyncio.run(calls(guard, n)) for _ in range(5))
print(bare, wrapped)
"""


COST_TEMPLATES = """
import statistics, timeit, jinja2
from taskboard import create_app
from werkzeug.test import Client
from wsgi_covguard.templates import TemplateLog
client = Client(create_app())
plain = {name: getattr(jinja2.Environment, name) for name in ("get_template", "select_template")}
log = TemplateLog(lambda: "tests/test_x.py::test_y|run")
def home():
    client.get("/")  # index.html, which extends base.html: two loads noted
for _ in range(300): home()
off, on = [], []
for _ in range(7):  # interleaved: the hooks taken out, put back
    for name, method in plain.items(): setattr(jinja2.Environment, name, method)
    off.append(min(timeit.repeat(home, number=500, repeat=3)) / 500 * 1e6)
    log.install()
    on.append(min(timeit.repeat(home, number=500, repeat=3)) / 500 * 1e6)
print(statistics.median(off), statistics.median(on))
"""


def templates_cost(python: Path, app: Path) -> tuple[float, float]:
    """µs per request of the Flask example's home page, in-process, without and with the
    hooks that note the templates each test renders (impact maps)."""
    out = subprocess.run([str(python), "-c", COST_TEMPLATES], cwd=app, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def middleware_cost(python: Path, app: Path, *, enabled: bool) -> tuple[float, float]:
    """µs per call of a bare app and of the same app behind CovGuard (tracing paused)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    if enabled:
        env.update(COVGUARD_TOKEN=TOKEN, COVERAGE_FILE=str(app / ".coverage-cost"))
    out = subprocess.run([str(python), "-c", COST], cwd=app, env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def asgi_inert_cost(python: Path) -> tuple[float, float]:
    """µs per call of a bare ASGI app and of the same app behind an inert CovGuardASGI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    out = subprocess.run([str(python), "-c", COST_ASGI], env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


WERKZEUG = (
    "import wsgi; from werkzeug.serving import run_simple;"
    " run_simple('127.0.0.1', {}, wsgi.application, threaded=True)"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per round")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is missing; run 'sudo apt-get install wrk'", file=sys.stderr)
        return 2
    rounds, seconds = args.rounds, args.seconds
    v313, v311 = version(PY313), version(PY311)
    rows = []
    with tempfile.TemporaryDirectory(prefix="covguard-bench-") as folder:
        app = Path(folder) / "app"
        skip = shutil.ignore_patterns("tests", "__pycache__")
        shutil.copytree(ROOT / "examples" / "flask", app, ignore=skip)
        (app / "bare.py").write_text(BARE)

        for what, goal, configs in [
            (f"Python {v313}: measuring (sysmon) / bare server", "≥ 0.90", {
                "A": lambda p: (waitress(PY313, "wsgi", p), True),
                "B": lambda p: (waitress(PY313, "bare", p), False)}),
            (f"Python {v311}: measuring (ctrace) / `coverage run`", "≥ 0.95", {
                "A": lambda p: (waitress(PY311, "wsgi", p), True),
                "B": lambda p: (waitress(PY311, "bare", p, under_coverage=True), False)}),
            (f"Python {v311}: inert middleware (no token) / bare app", "≥ 0.97", {
                "A": lambda p: (waitress(PY311, "wsgi", p), False),
                "B": lambda p: (waitress(PY311, "bare", p), False)}),
        ]:  # fmt: skip
            r = throughput(app, configs, rounds, seconds)
            a, b = r["A"], r["B"]
            rows.append(f"| {what} | {a:,.0f} req/s | {b:,.0f} req/s | **{a / b:.2f}** | {goal} |")

        # Per-test contexts, a switch every 0.1 s: sysmon (re-armed at each switch) against
        # no coverage, sysmon without contexts, and ctrace with contexts, side by side.
        flask = {
            "sysmon, contexts": lambda p: (waitress(PY313, "wsgi", p), True),
            "no coverage": lambda p: (waitress(PY313, "bare", p), False),
            "sysmon, no contexts": lambda p: (waitress(PY313, "wsgi", p), True),
            "ctrace, contexts": lambda p: (waitress(PY313, "wsgi", p), True),
        }
        r = throughput(
            app, flask, rounds, seconds, cores={"ctrace, contexts": "ctrace"},
            switching=frozenset({"sysmon, contexts", "ctrace, contexts"}),
        )  # fmt: skip
        a = r["sysmon, contexts"]
        for other, goal in [("no coverage", "≥ 0.90"), ("sysmon, no contexts", "report it"),
                            ("ctrace, contexts", "report it")]:  # fmt: skip
            b = r[other]
            rows.append(f"| Python {v313}: contexts switched every 0.1 s, sysmon / {other} "
                        f"| {a:,.0f} req/s | {b:,.0f} req/s | **{a / b:.2f}** "
                        f"| {goal} |")  # fmt: skip

        # The same four, for the Flask example's own browser suite (a context per test):
        # the suite's wall time (no coverage / the config: ≥ 0.90 means at most 11% longer),
        # and the server's CPU time over it, where a core's cost shows.
        suite = Path(folder) / "suite"
        shutil.copytree(ROOT / "examples" / "flask" / "tests", suite / "tests")
        shutil.copy(ROOT / "examples" / "flask" / "pytest.ini", suite / "pytest.ini")
        s = browser_suite(
            app, suite / "tests", flask, rounds, cores={"ctrace, contexts": "ctrace"},
            labelled=frozenset({"sysmon, contexts", "ctrace, contexts"}),
        )  # fmt: skip
        (a_wall, a_cpu) = s["sysmon, contexts"]
        for other, goal in [("no coverage", "≥ 0.90"), ("sysmon, no contexts", "report it"),
                            ("ctrace, contexts", "report it")]:  # fmt: skip
            b_wall, b_cpu = s[other]
            rows.append(
                f"| Python {v313}: the Flask example's browser suite (6 tests), a context "
                f"per test phase, sysmon / {other}: the suite's wall time (the server's "
                f"CPU) | {a_wall:.2f} s ({a_cpu * 1000:.0f} ms) | {b_wall:.2f} s "
                f"({b_cpu * 1000:.0f} ms) | **{b_wall / a_wall:.2f}** | {goal} |"
            )

        hello = Path(folder) / "hello"
        hello.mkdir()
        (hello / "hello.py").write_text(HELLO)
        (hello / "measured.py").write_text(HELLO_MEASURED)
        (hello / ".coveragerc").write_text("[run]\nsource = .\n")
        links = Path(folder) / "shortlinks"
        shutil.copytree(ROOT / "examples" / "fastapi", links, ignore=skip)
        (links / "bare.py").write_text(SHORTLINKS_BARE)
        for name, folder_, measured, bare, script in [
            ("FastAPI hello", hello, "measured:app", "hello:app", None),
            ("examples/fastapi", links, "asgi:app", "bare:app", "asgi_paths.lua"),
        ]:
            for what, goal, configs in [
                (f"{name}, uvicorn, Python {v313}: measuring (sysmon) / bare server", "≥ 0.90", {
                    "A": lambda p, m=measured: (uvicorn(PY313, m, p), True),
                    "B": lambda p, b=bare: (uvicorn(PY313, b, p), False)}),
                (f"{name}, uvicorn, Python {v311}: measuring (ctrace) / `coverage run`", "≥ 0.95", {
                    "A": lambda p, m=measured: (uvicorn(PY311, m, p), True),
                    "B": lambda p, b=bare: (uvicorn(PY311, b, p, under_coverage=True), False)}),
            ]:  # fmt: skip
                r = throughput(folder_, configs, rounds, seconds, script)
                a, b = r["A"], r["B"]
                rows.append(
                    f"| {what} | {a:,.0f} req/s | {b:,.0f} req/s | **{a / b:.2f}** | {goal} |"
                )

        gunicorn = str(PY311.parent / "gunicorn")
        for what, goal, make in [
            ("waitress", "≤ 0.5 s", lambda p: waitress(PY311, "wsgi", p)),
            ("werkzeug threaded", "≤ 0.5 s", lambda p: [str(PY311), "-c", WERKZEUG.format(p)]),
            ("gunicorn -w 4 (master)", "≤ 2 s",
             lambda p: [gunicorn, "-w", "4", "--bind", f"127.0.0.1:{p}", "wsgi:application"]),
        ]:  # fmt: skip
            gone = shutdown_seconds(app, make, rounds)
            rows.append(f"| shutdown request → process gone, {what}, Python {v311} "
                        f"| {gone:.2f} s | | | {goal} |")  # fmt: skip
        for what, enabled in (("measuring, tracing paused", True), ("inert", False)):
            bare_us, wrapped_us = middleware_cost(PY311, app, enabled=enabled)
            rows.append(f"| the middleware's own cost per request ({what}), Python {v311} "
                        f"| {wrapped_us - bare_us:.2f} µs | ({wrapped_us:.2f} vs {bare_us:.2f} µs "
                        "for the bare call) | | report it |")  # fmt: skip
        bare_us, noting_us = templates_cost(PY311, app)
        rows.append(f"| noting the templates each test renders, per request (the Flask home page,"
                    f" in-process), Python {v311} | {noting_us - bare_us:.2f} µs | ({noting_us:.1f}"
                    f" vs {bare_us:.1f} µs a request) | **{bare_us / noting_us:.3f}** "
                    "| no measurable cost |")  # fmt: skip
        bare_us, wrapped_us = asgi_inert_cost(PY311)
        rows.append(f"| CovGuardASGI's own cost per request (inert), Python {v311} "
                    f"| {wrapped_us - bare_us:.2f} µs | ({wrapped_us:.2f} vs {bare_us:.2f} µs "
                    "for the bare call) | | ≤ 0.5 µs |")  # fmt: skip

    print(f"wsgi_covguard benchmark: examples/flask under waitress --threads=4 (FastAPI: uvicorn,"
          " no access log); wrk -t1 -c4 "
          f"-d{seconds:g}s over 5 paths; {rounds} rounds interleaved A B, B A, medians; "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    print("| what | A | B | A / B | goal |\n|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
