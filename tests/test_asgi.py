"""The ASGI door under uvicorn: the WSGI contract, for a FastAPI app.

uvicorn is started as a CI script does (``cmd &``, SIGINT ignored) with the three-line
entry point; its lines are compared with ``coverage run``'s (``[run] sigterm = true``,
stopped by SIGTERM) around the same server for the same requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import (
    DASHBOARD,
    TOKEN,
    RunningServer,
    data_files,
    free_port,
    measured_lines,
    wait_in_flight,
    wait_workers_measuring,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

PY = sys.executable
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong-token-0123456789"}


def sent_as_written(method: str, port: int, target: str) -> int:
    """The status for ``target`` sent exactly as written (requests would decode ``%5F``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, target, headers=BEARER)
        return connection.getresponse().status
    finally:
        connection.close()


def uvicorn(app: str, port: int) -> list[str]:
    return [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


def hypercorn(app: str, port: int) -> list[str]:
    """hypercorn's command line: a master, and one worker it spawns (its default)."""
    return [PY, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]


def granian(app: str, port: int) -> list[str]:
    """granian's command line: a master, and one worker it spawns (its default)."""
    return [PY, "-m", "granian", "--interface", "asgi", app, "--host", "127.0.0.1", "--port",
            str(port)]  # fmt: skip


def daphne(app: str, port: int) -> list[str]:
    """daphne's command line: one process (Twisted)."""
    return [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]


#: server -> its command line
SERVERS = {"uvicorn": uvicorn, "hypercorn": hypercorn, "granian": granian, "daphne": daphne}
#: server -> the single-process command line ``coverage run`` measures for it: granian has
#: none (its workers are always processes of their own), uvicorn's stands in
SINGLE = {
    "uvicorn": uvicorn,
    "hypercorn": lambda app, port: [*hypercorn(app, port), "--workers", "0"],
    "granian": uvicorn,
    "daphne": daphne,
}
#: Servers with worker processes (``--workers``)
WITH_WORKERS = ["uvicorn", "hypercorn", "granian"]
#: daphne does not speak the ASGI lifespan protocol: no lifespan shutdown to run
LIFESPAN = {name: name != "daphne" for name in SERVERS}


def drive(url: str) -> None:
    assert requests.get(f"{url}/hello", timeout=10).json() == {"hello": "world"}
    assert requests.get(f"{url}/notes/1", timeout=10).json()["text"] == "buy milk"
    assert requests.post(f"{url}/notes", params={"text": "call"}, timeout=10).ok
    assert len(requests.get(f"{url}/slow", params={"seconds": 0}, timeout=10).content) == 200_000


@pytest.fixture
def notes(plainapp: Path) -> Path:
    (plainapp / ".coveragerc").write_text("[run]\nsource = .\nomit = notes_entry.py\n")
    return plainapp


def reference(
    folder: Path, servers: Callable[..., RunningServer], server: str = "uvicorn"
) -> dict[str, set[int]]:
    """``coverage run`` around ``server`` in one process, saved by SIGTERM
    (``[run] sigterm = true``)."""
    reference = folder / "reference"
    reference.mkdir()
    for name in ("notesapi.py", ".coveragerc"):
        (reference / name).write_text((folder / name).read_text())
    with (reference / ".coveragerc").open("a") as rc:
        rc.write("sigterm = true\n")
    port = free_port()
    single = SINGLE[server]("notesapi:api", port)
    argv = [PY, "-m", "coverage", "run", "-p", *single[1:]]
    running = servers(argv, cwd=reference, port=port, token=None).wait_listening()
    drive(running.url)
    # The note's background task runs after its answer, in a worker thread: SIGTERM must not
    # come before its line (on a busy machine it did not always follow it). Under the door,
    # the drain waits for it: the request is in flight until the app returns.
    deadline = time.monotonic() + 10
    while requests.get(f"{running.url}/notes/2", timeout=10).json()["text"] != "call":
        assert time.monotonic() < deadline, "the background task never ran"
        time.sleep(0.01)
    running.signal(signal.SIGTERM)
    running.wait(timeout=10)
    return measured_lines(reference, "notesapi")


@pytest.mark.parametrize("name", list(SERVERS))
def test_as_ci_starts_it_refuses_what_wsgi_refuses_and_stops_with_exit_0(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = SERVERS[name]("notes_entry:app", port)
    server = servers(argv, cwd=notes, port=port).wait_listening()
    drive(server.url)
    url = server.url
    refused = [
        requests.post(f"{url}/__shutdown__", timeout=10).status_code,
        requests.post(f"{url}/__shutdown__", headers=WRONG, timeout=10).status_code,
        requests.get(f"{url}/__shutdown__", headers=BEARER, timeout=10).status_code,
        requests.get(f"{url}/__coverage__/", timeout=10).status_code,
        requests.post(f"{url}/__coverage__/save", auth=("me", TOKEN), timeout=10).status_code,
        sent_as_written("POST", server.port, "/%5F%5Fshutdown%5F%5F"),
    ]  # fmt: skip
    assert refused == [403, 403, 405, 401, 403, 404]  # the last one is the app's own 404
    assert requests.get(f"{url}/__coverage__/", auth=("me", DASHBOARD), timeout=10).ok
    status = requests.get(f"{url}/__coverage__/status", headers=BEARER, timeout=10).json()
    assert status["in_flight"] == 0
    began = time.monotonic()
    answer = server.shutdown()
    assert answer.status_code == 202
    assert server.wait(timeout=5) == 0, server.output()
    assert time.monotonic() - began < 5
    serving = answer.json()["pid"]  # hypercorn's worker; uvicorn's one process
    if LIFESPAN[name]:
        assert (notes / "lifespan-shutdown.log").read_text().strip() == str(serving)
    assert len(data_files(notes)) == 1
    measured = measured_lines(notes, "notesapi")
    assert measured == reference(notes, servers, name)
    never = (
        (notes / "notesapi.py")
        .read_text()
        .splitlines()
        .index('    return {"never": "asked"}  # no test asks for it: whoever does adds this line')
    )
    assert never + 1 not in measured["notesapi.py"], "the control requests reached no app line"


@pytest.mark.core_independent
@pytest.mark.parametrize("name", list(SERVERS))
def test_a_streamed_request_in_flight_at_the_shutdown_completes(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = SERVERS[name]("notes_entry:app", port)
    server = servers(argv, cwd=notes, port=port).wait_listening()
    slow: dict[str, object] = {}

    def fetch() -> None:
        answer = requests.get(f"{server.url}/slow", params={"seconds": 1.5}, timeout=20)
        slow.update(status=answer.status_code, size=len(answer.content))

    client = threading.Thread(target=fetch)
    client.start()
    wait_in_flight(server.url, 1)
    assert server.shutdown().status_code == 202
    client.join(timeout=20)
    assert slow == {"status": 200, "size": 200_000}
    assert server.wait(timeout=10) == 0, server.output()


@pytest.mark.core_independent
@pytest.mark.parametrize("name", ["hypercorn", "daphne"])
def test_a_server_whose_stop_cuts_takes_no_connection_while_the_door_drains(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """hypercorn's and daphne's own stops cut a request that arrives as they begin: the
    door stops the server accepting, asks kept-alive clients to close, drains, then
    stops it."""
    port = free_port()
    server = servers(SERVERS[name]("notes_entry:app", port), cwd=notes, port=port)
    server.wait_listening()
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    kept.request("GET", "/hello")
    before = kept.getresponse()
    assert before.read() == b'{"hello":"world"}'
    assert before.getheader("connection") != "close", "kept alive before the stop"
    slow = threading.Thread(
        target=requests.get, args=(f"{server.url}/slow",), kwargs={"params": {"seconds": 3}}
    )
    slow.start()
    wait_in_flight(server.url, 1)
    assert server.shutdown().status_code == 202

    kept.request("GET", "/hello")
    during = kept.getresponse()
    assert during.read() == b'{"hello":"world"}'
    assert during.getheader("connection") == "close", "the client is asked to close"
    time.sleep(0.5)  # the door has taken the listening socket off the event loop
    with socket.create_connection(("127.0.0.1", port), timeout=10) as late:
        late.sendall(b"GET /counted?late HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        slow.join(timeout=20)
        assert server.wait(timeout=10) == 0, server.output()
        with contextlib.suppress(ConnectionResetError):
            assert late.recv(100) == b"", "no answer: the server closed what it never accepted"
    log = notes / "requests.log"
    assert not log.exists() or "late" not in log.read_text(), "the app never saw it"


@pytest.mark.core_independent
def test_hypercorn_workers_all_stop_accepting_and_drain_before_the_master_stops_them(
    notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """The worker taking the shutdown asks its siblings to stop accepting too: they answer
    as stopping and finish what they serve before hypercorn's master stops them."""
    port = free_port()
    argv = [*hypercorn("notes_entry:app", port), "--workers", "2"]
    server = servers(argv, cwd=notes, port=port).wait_listening()
    wait_workers_measuring(server, 2)
    kept: dict[int, list[http.client.HTTPConnection]] = {}
    deadline = time.monotonic() + 20
    while not (len(kept) == 2 and max(len(connections) for connections in kept.values()) >= 2):
        # The kernel gives each connection to a worker that is accepting: a worker whose
        # door opened may not be accepting yet (all 100 went to the other, seen once).
        assert time.monotonic() < deadline, (list(kept), server.output())
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/__coverage__/status", headers=BEARER)
        pid = json.loads(connection.getresponse().read())["pid"]
        if len(kept.setdefault(pid, [])) < 2:
            kept[pid].append(connection)
        else:
            connection.close()
            time.sleep(0.02)
    try:
        sibling, stopping = sorted(kept, key=lambda pid: -len(kept[pid]))
        slow_one, later_one = kept[sibling][:2]
        slow: dict[str, object] = {}

        def fetch() -> None:
            slow_one.request("GET", "/slow?seconds=3")
            answer = slow_one.getresponse()
            slow.update(status=answer.status, size=len(answer.read()))

        client = threading.Thread(target=fetch)
        client.start()
        time.sleep(0.5)  # the slow request is in the sibling's app
        kept[stopping][0].request("POST", "/__shutdown__", headers=BEARER)
        assert kept[stopping][0].getresponse().status == 202
        time.sleep(0.5)  # the stopping worker told its sibling
        later_one.request("GET", "/hello")
        later = later_one.getresponse()
        assert later.read() == b'{"hello":"world"}'
        assert later.getheader("connection") == "close", "the sibling answers as stopping"
        client.join(timeout=20)
        assert slow == {"status": 200, "size": 200_000}, "the sibling drained before it stopped"
        assert server.wait(timeout=10) == 0, server.output()
    finally:
        for connection in (c for connections in kept.values() for c in connections):
            connection.close()


@pytest.mark.core_independent
def test_under_trio_the_app_is_served_and_the_control_routes_say_they_need_asyncio(
    notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = [*hypercorn("notes_entry:app", port), "--worker-class", "trio"]
    server = servers(argv, cwd=notes, port=port).wait_listening()
    assert requests.get(f"{server.url}/hello", timeout=10).json() == {"hello": "world"}
    with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=10) as websocket:
        websocket.send("through")
        assert websocket.recv(timeout=10) == "through"
    answer = server.shutdown()
    assert answer.status_code == 501
    assert "-k asyncio" in answer.json()["error"]
    assert TOKEN not in answer.text
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0, server.output()
    said = [line for line in server.output().splitlines() if "need asyncio" in line]
    assert said == [
        "covguard: the control routes need asyncio's event loop, and this server runs another"
        " (trio); serve with asyncio (hypercorn: -k asyncio, its default); the app itself is"
        " served"
    ], "one line at start-up"
    assert "Traceback" not in server.output()
    assert data_files(notes), "measured and saved at exit all the same"


@pytest.mark.parametrize("round_", range(5))
def test_sigterm_twice_stops_hypercorn(
    round_: int, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """A worker that waited on hypercorn's shutdown event made the master's ``set()``
    wait for it, and a second SIGTERM then deadlocked the master in its own handler (1
    time in 10): the door polls the event instead."""
    port = free_port()
    server = servers(hypercorn("notes_entry:app", port), cwd=notes, port=port).wait_listening()
    assert requests.get(f"{server.url}/hello", timeout=10).ok
    server.signal(signal.SIGTERM)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0, server.output()
    assert data_files(notes)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("uvicorn", 128 + signal.SIGTERM),  # it dies of SIGTERM, as uvicorn alone would
        ("hypercorn", 0),  # hypercorn's master exits 0 once its workers stopped
        ("granian", 0),  # so does granian's
        ("daphne", 0),  # Twisted's reactor stops and the process exits 0
    ],
)
def test_sigterm_from_a_supervisor_keeps_the_data(
    name: str, status: int, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = SERVERS[name]("notes_entry:app", port)
    server = servers(argv, cwd=notes, port=port).wait_listening()
    drive(server.url)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=10) == status, server.output()
    assert (notes / "lifespan-shutdown.log").exists() == LIFESPAN[name], "a graceful stop"
    assert "notesapi.py" in measured_lines(notes, "notesapi")


def test_covguard_run_serves_an_asgi_app_with_uvicorn_and_reports_it(notes: Path) -> None:
    client = "import os, requests; requests.get(os.environ['COVGUARD_URL'] + '/hello', timeout=10)"
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "run", "notesapi:api", "--", PY, "-c", client],
        cwd=notes, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(uvicorn, core " in done.stdout
    assert "notesapi.py" in done.stdout
    assert (notes / "lifespan-shutdown.log").exists()


@pytest.mark.parametrize("name", ["hypercorn", "granian", "daphne"])
def test_covguard_serve_serves_an_asgi_app_with_the_server_asked_for(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """hypercorn in this process; granian in a worker, which imports the app (granian's
    master learns from a throwaway process that it is an ASGI one)."""
    port = free_port()
    argv = [PY, "-m", "wsgi_covguard", "serve", "notesapi:api", "--server", name,
            "--port", str(port)]  # fmt: skip
    server = servers(argv, cwd=notes, port=port).wait_listening()
    drive(server.url)
    answer = server.shutdown()
    assert answer.status_code == 202
    assert server.wait(timeout=5) == 0, server.output()
    assert f"({name}, " in server.output()
    if LIFESPAN[name]:
        assert (notes / "lifespan-shutdown.log").read_text().strip() == str(answer.json()["pid"])
    assert len(data_files(notes)) == 1
    assert measured_lines(notes, "notesapi") == reference(notes, servers, name)


@pytest.mark.core_independent
def test_a_wsgi_server_for_an_asgi_app_is_refused_in_one_line(notes: Path) -> None:
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "serve", "notesapi:api", "--server", "waitress", "--port", "0"],
        cwd=notes, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "covguard: 'notesapi:api' is an ASGI application; serve it with --server granian,"
        " uvicorn, hypercorn or daphne"
    )


@pytest.mark.parametrize("name", WITH_WORKERS)
def test_workers_stop_together_and_their_union_is_coverage_runs(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = [*SERVERS[name]("notes_entry:app", port), "--workers", "2"]
    server = servers(argv, cwd=notes, port=port).wait_listening()
    deadline = time.monotonic() + 20
    while True:  # the supervisor listens before its workers are ready
        try:
            status = requests.get(f"{server.url}/__coverage__/status", headers=BEARER, timeout=10)
            if status.ok and status.json()["workers"] == 2:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    for _ in range(3):  # reach both workers, most likely
        drive(server.url)
    saved = requests.post(f"{server.url}/__coverage__/save", headers=BEARER, timeout=10).json()
    assert len(saved["saved"]) == 2, saved  # a command reaches every worker
    began = time.monotonic()
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=10) == 0, server.output()
    assert time.monotonic() - began < 5
    assert len((notes / "lifespan-shutdown.log").read_text().split()) == 2, (
        "both workers' lifespans"
    )
    assert len(data_files(notes)) == 2
    assert measured_lines(notes, "notesapi") == reference(notes, servers, name)


@pytest.mark.core_independent
@pytest.mark.parametrize("name", list(SERVERS))
def test_an_open_websocket_is_drained_and_ends_the_stop_when_it_closes(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    argv = SERVERS[name]("notes_entry:app", port)
    server = servers(argv, cwd=notes, port=port).wait_listening()
    with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=10) as socket:
        socket.send("before")
        assert socket.recv(timeout=10) == "before"
        wait_in_flight(server.url, 1)
        assert server.shutdown().status_code == 202
        time.sleep(0.5)  # the stop is draining: the websocket still answers
        socket.send("during")
        assert socket.recv(timeout=10) == "during"
        assert server.process.poll() is None
    began = time.monotonic()
    assert server.wait(timeout=5) == 0, server.output()
    assert time.monotonic() - began < 3, "the stop went on once the websocket closed"
    assert "cutting" not in server.output()


@pytest.mark.parametrize("name", list(SERVERS))
def test_a_websocket_open_at_drain_timeout_is_closed_cleanly_and_the_server_exits_0(
    name: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """uvicorn would wait for the websocket for ever, hypercorn for its --graceful-timeout
    (3.11) or until the client leaves (3.12+): the door's drain_timeout ends it."""
    (notes / "deaf_entry.py").write_text(
        "import wsgi_covguard\nwsgi_covguard.start()\nimport notesapi\n"
        "app = wsgi_covguard.CovGuardASGI(notesapi.api, drain_timeout=1.0)\n"
    )
    port = free_port()
    argv = SERVERS[name]("deaf_entry:app", port)
    if name == "hypercorn":
        argv += ["--graceful-timeout", "5"]  # longer than the door's: the door's applies
    server = servers(argv, cwd=notes, port=port).wait_listening()
    with connect(f"ws://127.0.0.1:{port}/ws/deaf", open_timeout=10) as socket:
        assert socket.recv(timeout=10) == "hello"
        began = time.monotonic()
        assert server.shutdown().status_code == 202
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)
        # 1012, "service restart": the server stops (daphne lets an app send 1000 alone)
        assert socket.close_code == (1000 if name == "daphne" else 1012)
    assert server.wait(timeout=5) == 0, server.output()
    assert time.monotonic() - began < 5
    assert (notes / "deaf-ended.log").read_text() == "ended\n", "the app's cleanup ran"
    assert (notes / "lifespan-shutdown.log").exists() == LIFESPAN[name]
    cut = [line for line in server.output().splitlines() if "cut " in line]
    said = "cut WEBSOCKET /ws/deaf: still running at drain_timeout=1.0s (closed cleanly)"
    assert len(cut) == 1
    assert cut[0].endswith(said)  # in the server's own log format where it set one (daphne)
    assert "Traceback" not in server.output()


#: How the other worker boots slowly: before its door opens, or after, in a callback
#: (the stop comes there: Python prints the handler's SystemExit as "ignored", goes on).
BOOTING_IN = {
    "module": "    time.sleep(4)\napp = wsgi_covguard.CovGuardASGI(notesapi.api)\n",
    "callback": (
        "    class Slow:\n"
        "        def __del__(self): time.sleep(4)\n"
        "    app = wsgi_covguard.CovGuardASGI(notesapi.api)\n"
        "    Slow()\n"
        "else:\n"
        "    app = wsgi_covguard.CovGuardASGI(notesapi.api)\n"
    ),
}


@pytest.mark.parametrize("booting_in", list(BOOTING_IN))
def test_a_stop_while_a_granian_worker_boots_waits_for_it_and_every_worker_saves(
    booting_in: str, notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """granian's forked workers ignore SIGTERM until they serve: its master, stopped while
    one boots, waited for it for ever. The stop now waits for the booting worker's door,
    and SIGTERM ends a worker that has not begun to serve (which saves)."""
    (notes / "slow_entry.py").write_text(
        "import os, time\n"
        "import wsgi_covguard\n"
        "wsgi_covguard.start()\n"
        "import notesapi\n"
        "try:\n"
        "    os.close(os.open('first-worker', os.O_CREAT | os.O_EXCL))\n"
        "    app = wsgi_covguard.CovGuardASGI(notesapi.api)\n"
        "except FileExistsError:  # the other worker boots slowly\n"
        f"{BOOTING_IN[booting_in]}"
    )
    port = free_port()
    argv = [*granian("slow_entry:app", port), "--workers", "2"]
    server = servers(argv, cwd=notes, port=port).wait_listening()
    assert requests.get(f"{server.url}/hello", timeout=10).ok  # the fast worker serves
    assert server.shutdown().status_code == 202  # the slow one still sleeps
    assert server.wait(timeout=15) == 0, server.output()
    assert len(data_files(notes)) == 2, "both workers saved"


DATASETTE_PAGES = [
    "/",
    "/fixtures",
    "/fixtures/notes",
    "/fixtures/notes.json",
    "/fixtures/notes/1",
    "/-/versions.json",
    "/fixtures?sql=select+count(*)+from+notes",
    "/fixtures/nothing-here",
]


@pytest.fixture
def datasette(tmp_path: Path) -> Path:
    """Datasette (a real ASGI app from PyPI) over a small SQLite file, measured whole."""
    folder = tmp_path / "datasette"
    folder.mkdir()
    db = sqlite3.connect(folder / "fixtures.db")
    with db:  # commits
        db.execute("create table notes (id integer primary key, text text)")
        db.executemany("insert into notes (text) values (?)", [("buy milk",), ("call",)])
    db.close()
    (folder / "ds_app.py").write_text(
        'from datasette.app import Datasette\napp = Datasette(["fixtures.db"]).app()\n'
    )
    (folder / "ds_entry.py").write_text(
        "import wsgi_covguard\nwsgi_covguard.start()\nimport ds_app\n"
        "app = wsgi_covguard.CovGuardASGI(ds_app.app)\n"
    )
    (folder / ".coveragerc").write_text("[run]\nsource_pkgs = datasette\n")
    return folder


def browse_datasette(url: str) -> None:
    statuses = [requests.get(url + page, timeout=20).status_code for page in DATASETTE_PAGES]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 404]


@pytest.mark.parametrize("name", list(SERVERS))
def test_datasette_from_pypi_measures_what_coverage_run_measures(
    name: str, datasette: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    server = servers(SERVERS[name]("ds_entry:app", port), cwd=datasette, port=port)
    browse_datasette(server.wait_listening().url)
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=5) == 0, server.output()
    measured = measured_lines(datasette, "datasette")
    # coverage run around the server in one process, the same pages, saved by SIGTERM
    reference = datasette / "reference"
    reference.mkdir()
    for name_ in ("fixtures.db", "ds_app.py"):
        (reference / name_).write_bytes((datasette / name_).read_bytes())
    (reference / ".coveragerc").write_text("[run]\nsource_pkgs = datasette\nsigterm = true\n")
    port = free_port()
    argv = [PY, "-m", "coverage", "run", "-p", *SINGLE[name]("ds_app:app", port)[1:]]
    alone = servers(argv, cwd=reference, port=port, token=None).wait_listening()
    browse_datasette(alone.url)
    alone.signal(signal.SIGTERM)
    alone.wait(timeout=10)
    assert sum(map(len, measured.values())) > 1000
    assert measured == measured_lines(reference, "datasette")


def test_uvicorn_reload_measures_each_serving_child_and_stops_with_exit_0(
    notes: Path, servers: Callable[..., RunningServer]
) -> None:
    """``--reload`` serves from a child process, started again on each change: each child
    saves what it ran when the reloader stops it, and the shutdown stops the reloader."""
    port = free_port()
    server = servers([*uvicorn("notes_entry:app", port), "--reload"], cwd=notes, port=port)
    url = server.wait_listening().url

    def serving_pid() -> int:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(f"{url}/__coverage__/status", headers=BEARER, timeout=5)
                return int(answer.json()["pid"])
            except requests.ConnectionError:  # the next child is starting
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.1)

    first = serving_pid()
    assert requests.get(f"{url}/hello", timeout=10).ok
    with (notes / "notesapi.py").open("a") as source:
        source.write("# changed: uvicorn reloads\n")
    deadline = time.monotonic() + 20
    while (second := serving_pid()) == first:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    assert requests.get(f"{url}/notes/1", timeout=10).ok
    assert server.shutdown().status_code == 202
    assert server.wait(timeout=10) == 0, server.output()
    assert len(data_files(notes)) == 2, "the first child saved when the reloader replaced it"
    ended = (notes / "lifespan-shutdown.log").read_text().split()
    assert ended == [str(first), str(second)]
    lines = measured_lines(notes, "notesapi")["notesapi.py"]
    source = (notes / "notesapi.py").read_text().splitlines()
    for body in (
        '    return {"hello": "world"}',
        '    return {"number": number, "text": NOTES.get(number, "")}',
    ):
        assert source.index(body) + 1 in lines
