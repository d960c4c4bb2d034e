"""What per-test contexts cost in CPU time, sysmon against ctrace: ``make bench``.

The Flask example's pages and JSON API called in-process through werkzeug's test client
(CPU-bound: no sockets, no waiting), a fixed number of requests, while a thread switches
the context every 0.1 s as the pytest plugin does between test phases. Each configuration
runs in a process of its own: no coverage; sysmon with contexts (re-armed at each switch,
``covcompat.switch_context``); ctrace with contexts. Measured: the app alone
(``source_pkgs = taskboard``), and Flask, werkzeug and jinja2 too. The figure is the
process's CPU time with no coverage over its CPU time with the configuration (1.0: free),
median of rounds interleaved A B C, C B A. It prints a table and checks nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY313 = ROOT / ".venv-3.13" / "bin" / "python"
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a local benchmark's token)

WORK = r"""
import os, sys, threading, time
core, packages, requests = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
session = None
if core != "none":
    import wsgi_covguard
    session = wsgi_covguard.start(core=core, contexts=True, source_pkgs=packages,
                                  data_file=os.path.abspath(".coverage-" + core))
from taskboard import create_app
from werkzeug.test import Client
client = Client(create_app())
client.post("/tasks", data={"title": "Measured", "priority": "2"})
stop = threading.Event()
switches = []
def switching():
    number = 0
    while not stop.wait(0.1):
        number += 1
        began = time.thread_time()  # its own CPU: its wall time is the GIL's queue
        session.switch_context(f"tests/test_x.py::test_{number}|run")
        switches.append(time.thread_time() - began)
if session is not None:
    session.switch_context("tests/test_x.py::test_0|run")
    threading.Thread(target=switching, daemon=True).start()
began = time.process_time()
for _ in range(requests):
    client.get("/")
    client.get("/tasks/1")
    client.get("/api/tasks")
cpu = time.process_time() - began
stop.set()
if session is not None:
    session.finish()
print(cpu, sorted(switches)[len(switches) // 2] if switches else 0.0)
"""


def cpu_seconds(app: Path, core: str, packages: str, requests: int) -> tuple[float, float]:
    """The CPU seconds of the requests, and the median CPU seconds of a switch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    env["COVGUARD_TOKEN"] = TOKEN
    done = subprocess.run(
        [str(PY313), "-c", WORK, core, packages, str(requests)], cwd=app, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cpu, switch = done.stdout.split()[-2:]
    return float(cpu), float(switch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    cores = ["none", "sysmon", "ctrace"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="covguard-contexts-") as folder:
        app = Path(folder) / "app"
        skip = shutil.ignore_patterns("tests", "__pycache__", ".coverage*")
        shutil.copytree(ROOT / "examples" / "flask", app, ignore=skip)
        for what, packages in [("the app", "taskboard"),
                               ("the app, Flask, werkzeug, jinja2",
                                "taskboard,flask,werkzeug,jinja2")]:  # fmt: skip
            cpu: dict[str, list[float]] = {core: [] for core in cores}
            switch: dict[str, list[float]] = {core: [] for core in cores}
            for number in range(args.rounds):
                for core in cores if number % 2 == 0 else reversed(cores):
                    seconds, one_switch = cpu_seconds(app, core, packages, args.requests)
                    cpu[core].append(seconds)
                    switch[core].append(one_switch)
            bare = statistics.median(cpu["none"])
            for core in ("sysmon", "ctrace"):
                mine, one = statistics.median(cpu[core]), statistics.median(switch[core])
                rows.append(f"| {core} + contexts, {what} measured | {mine:.2f} s | {bare:.2f} s"
                            f" | **{bare / mine:.2f}** | {one * 1e3:.2f} ms |")  # fmt: skip
    asked = "import platform; print(platform.python_version())"
    version = subprocess.run([str(PY313), "-c", asked], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    print(f"wsgi_covguard contexts benchmark: Python {version}, the Flask example in-process"
          f" ({args.requests * 3} requests), a switch every 0.1 s; CPU time, {args.rounds} rounds"
          " interleaved, medians\n")  # fmt: skip
    print(
        "| configuration | CPU time | no coverage | no coverage / it | a switch's CPU |\n"
        "|---|---|---|---|---|"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
