"""Does a measuring server's memory stay flat over a long run? ``make soak``.

Two servers side by side on 127.0.0.1, as a long end-to-end session uses them: the Flask
example under waitress and the FastAPI example under uvicorn, each measured through its
entry point, each with a client loading its pages, a dashboard polling its summary every
2 s (as ``dashboard.html`` does) and, every 10 s, a reset to start-up and a save: the lines
then come back, so the polls that follow make fresh reports (a report is made again only
when the data changed), the case that left 0.5 MB behind each time. Every 30 s it reads
each server's resident memory (``VmRSS``); after the run it prints how much it grew from
the end of a one-minute warm-up, and stops each server with the shutdown route. It prints
figures and checks nothing against a threshold (the goal, within 5 MB over 20 minutes, is
in the README); ``--minutes`` shortens the run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-token-0123456789abcdef"  # noqa: S105 (a local benchmark's token)
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WARM_UP = 60.0  # seconds before the first reading that counts: imports, templates, caches


@dataclass
class Soaked:
    """One server under soak: how to start it, what its client asks, what it read."""

    name: str
    example: str
    argv: list[str]  # {port} is replaced
    paths: list[str]
    readings: list[tuple[float, int]] = field(default_factory=list)  # (seconds, RSS bytes)
    requests: int = 0
    errors: list[str] = field(default_factory=list)


SERVERS = [
    Soaked("Flask, waitress", "flask",
           ["-m", "waitress", "--listen=127.0.0.1:{port}", "wsgi:application"],
           ["/", "/api/tasks", "/tasks/1", "/tasks/404"]),
    Soaked("FastAPI, uvicorn", "fastapi",
           ["-m", "uvicorn", "asgi:app", "--port", "{port}", "--no-access-log"],
           ["/", "/api/links", "/links/nothing-here"]),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ask(url: str, *, method: str = "GET", token: bool = False) -> int:
    request = urllib.request.Request(url, method=method, headers=BEARER if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:  # the example's own 404s are part of the load
        exc.read()
        return int(exc.code)


def soak(server: Soaked, python: Path, minutes: float, stop: threading.Event) -> None:
    try:
        _soak(server, python, minutes, stop)
    except Exception as exc:  # said in the table, beside the other server's figures
        server.errors.append(f"{type(exc).__name__}: {exc}")


def _soak(server: Soaked, python: Path, minutes: float, stop: threading.Event) -> None:
    folder = Path(tempfile.mkdtemp(prefix="covguard-soak-"))
    app = folder / server.example
    leave_out = shutil.ignore_patterns(".coverage", ".coverage.*", "__pycache__", "tests")
    shutil.copytree(ROOT / "examples" / server.example, app, ignore=leave_out)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    env |= {"COVGUARD_TOKEN": TOKEN, "COVERAGE_RCFILE": str(app / ".coveragerc")}
    argv = [str(python), *(part.format(port=port) for part in server.argv)]
    process = subprocess.Popen(argv, cwd=app, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ask(url + "/")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv} did not start") from None
                time.sleep(0.1)
        began = time.monotonic()
        end = began + minutes * 60
        next_poll = next_save = next_reading = began
        pages = itertools.cycle(server.paths)
        while time.monotonic() < end and not stop.is_set():
            now = time.monotonic()
            if now >= next_poll:  # the dashboard's own poll
                ask(url + "/__coverage__/summary", token=True)
                ask(url + "/__coverage__/snapshots", token=True)
                next_poll = now + 2
            if now >= next_save:  # back to start-up first: the next polls make fresh reports
                for route in ("reset?to=start", "save"):
                    status = ask(f"{url}/__coverage__/{route}", method="POST", token=True)
                    if status != 200:
                        server.errors.append(f"{route} answered {status}")
                next_save = now + 10
            if now >= next_reading:
                server.readings.append((now - began, rss(process.pid)))
                next_reading = now + 30
            status = ask(url + next(pages))
            server.requests += 1
            if status >= 500:
                server.errors.append(f"a page answered {status}")
            time.sleep(0.01)
        server.readings.append((time.monotonic() - began, rss(process.pid)))
        ask(url + "/__shutdown__", method="POST", token=True)
        if process.wait(timeout=30) != 0:
            server.errors.append(f"exit status {process.returncode} after the shutdown")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)


def report(server: Soaked) -> str:
    counted = [(at, size) for at, size in server.readings if at >= WARM_UP] or server.readings
    if not counted:
        return f"| {server.name} | no reading | | | | | | {'; '.join(server.errors)} |"
    first, last = counted[0][1], counted[-1][1]
    top = max(size for _, size in counted)
    minutes = (counted[-1][0] - counted[0][0]) / 60
    mb = 1024 * 1024
    return (
        f"| {server.name} | {minutes:.0f} min | {server.requests} | {first / mb:.1f} MB |"
        f" {last / mb:.1f} MB | {(last - first) / mb:+.1f} MB | {(top - first) / mb:+.1f} MB |"
        f" {', '.join(sorted(set(server.errors))) or 'none'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    options = parser.parse_args()
    stop = threading.Event()
    threads = [
        threading.Thread(target=soak, args=(server, options.python, options.minutes, stop))
        for server in SERVERS
    ]
    print(f"soaking {len(SERVERS)} servers for {options.minutes:g} minutes...", flush=True)
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
    version = subprocess.run([str(options.python), "-V"], capture_output=True, text=True).stdout
    print(f"\n{version.strip()}; RSS from the end of a {WARM_UP:.0f} s warm-up to the end:\n")
    print("| server | counted | requests | RSS after warm-up | RSS at the end | grown | "
          "highest above | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for server in SERVERS:
        print(report(server))
        readings = " ".join(f"{size / 1048576:.1f}" for _, size in server.readings)
        print(f"  ({server.name}: every reading, MB: {readings})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
