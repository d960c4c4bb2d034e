"""The stop signals the server's master only: never a harness, never a stranger.

A test harness that runs the server in a ``multiprocessing`` child of its own is no
pre-fork master, and a worker whose master died was adopted by another process (here a
subreaper, as a container's init or a CI runner may be): neither may be sent the stop's
SIGTERM. Real servers, real processes, each signalled by pid.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import TOKEN, RunningServer, data_files, free_port, measured_lines

from wsgi_covguard.prefork import children

#: The server run in a child of the harness, in Python, as a test harness does.
IN_A_CHILD = {
    "uvicorn": "import uvicorn\n"
    "uvicorn.run('notes_entry:app', host='127.0.0.1', port=PORT, log_level='warning')\n",
    "hypercorn": "import asyncio, hypercorn.asyncio, hypercorn.config, notes_entry\n"
    "config = hypercorn.config.Config()\nconfig.bind = [f'127.0.0.1:{PORT}']\n"
    "asyncio.run(hypercorn.asyncio.serve(notes_entry.app, config))\n",
    "granian": "from granian import Granian\n"
    "Granian('notes_entry:app', interface='asgi', address='127.0.0.1', port=PORT).serve()\n",
}

HARNESS = """\
import multiprocessing, sys

PORT = int(sys.argv[1])


def serve():
{body}

if __name__ == "__main__":
    child = multiprocessing.Process(target=serve)
    child.start()
    child.join()
    print(f"harness: the server exited {{child.exitcode}}; the harness goes on", flush=True)
"""


def hello_line(folder: Path) -> int:
    lines = (folder / "notesapi.py").read_text().splitlines()
    return lines.index('    return {"hello": "world"}') + 1


def measuring(folder: Path) -> None:
    (folder / ".coveragerc").write_text("[run]\nsource_pkgs = notesapi\n")


@pytest.mark.parametrize("server", IN_A_CHILD)
def test_a_server_in_a_harness_child_stops_alone_and_the_harness_survives(
    server: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    measuring(plainapp)
    body = "".join(f"    {line}\n" for line in IN_A_CHILD[server].splitlines())
    (plainapp / "harness.py").write_text(HARNESS.format(body=body))
    port = free_port()
    argv = [sys.executable, "harness.py", str(port)]
    live = servers(argv, cwd=plainapp, port=port).wait_listening()
    assert live.get("/hello").json() == {"hello": "world"}
    assert live.shutdown().status_code == 202
    code = live.wait(timeout=20)
    output = live.output()
    assert code == 0, f"the harness was signalled ({code}):\n{output}"
    assert "harness: the server exited 0; the harness goes on" in output, output
    assert hello_line(plainapp) in measured_lines(plainapp, "notesapi")["notesapi.py"]


#: A harness that adopts the orphans of what it starts (a subreaper), starts a server with
#: two workers, and reaps every process until none is left.
SUBREAPER = """\
import ctypes, os, subprocess, sys

ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
master = subprocess.Popen(sys.argv[1:])
print(f"master {master.pid}", flush=True)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
print("harness: every process it started is gone; the harness goes on", flush=True)
"""

WORKERS = {
    "uvicorn": lambda port: ["uvicorn", "notes_entry:app", "--workers", "2", "--host",
                             "127.0.0.1", "--port", str(port)],
    "hypercorn": lambda port: ["hypercorn", "notes_entry:app", "--workers", "2", "--bind",
                               f"127.0.0.1:{port}"],
    "granian": lambda port: ["granian", "--interface", "asgi", "notes_entry:app", "--workers",
                             "2", "--host", "127.0.0.1", "--port", str(port)],
}  # fmt: skip


@pytest.mark.parametrize("server", WORKERS)
def test_workers_whose_master_died_stop_and_signal_no_one_else(
    server: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    measuring(plainapp)
    (plainapp / "subreaper.py").write_text(SUBREAPER)
    port = free_port()
    argv = [str(Path(sys.executable).parent / WORKERS[server](port)[0]), *WORKERS[server](port)[1:]]
    live = servers([sys.executable, "subreaper.py", *argv], cwd=plainapp, port=port)
    live.wait_listening()
    master = int(live.output().split("master ", 1)[1].split()[0])
    deadline = time.monotonic() + 20
    while len(workers := children(master)) < 2:  # both booted
        assert time.monotonic() < deadline, live.output()
        time.sleep(0.05)
    for _ in range(4):
        assert live.get("/hello").json() == {"hello": "world"}
    os.kill(master, signal.SIGKILL)  # the workers are the harness's now
    deadline = time.monotonic() + 20
    while set(workers) - set(children(live.pid)):
        assert time.monotonic() < deadline, live.output()
        time.sleep(0.05)
    # Each worker that takes a shutdown stops: the port is shared, so ask until none listens.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(20):
        try:
            requests.post(f"{live.url}/__shutdown__", headers=bearer, timeout=5)
        except requests.ConnectionError:
            if not children(live.pid):
                break
        time.sleep(0.5)
    code = live.wait(timeout=20)
    output = live.output()
    assert code == 0, f"the harness was signalled ({code}):\n{output}"
    assert "harness: every process it started is gone" in output, output
    assert "is gone; stopping this process alone" in output, output
    assert len(data_files(plainapp)) == 2, output  # each worker saved at its exit
    assert hello_line(plainapp) in measured_lines(plainapp, "notesapi")["notesapi.py"]
