"""Nothing lost under faults and load; nothing honoured without the token.

Every server binds 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live import (
    BIN,
    TOKEN,
    CovguardServe,
    RunningServer,
    data_files,
    free_port,
    measured_lines,
    read_data,
    wait_in_flight,
)

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def line_of(folder: Path, text: str, module: str = "plainapp") -> int:
    return (folder / f"{module}.py").read_text().splitlines().index(text) + 1


AFTER_SLEEP = '    return b"x" * 200_000  # big enough to span many socket writes'
HELLO = '        body = b"hello"'


# -- drain: requests in flight finish, with their lines ------------------------------------


def gunicorn_gthread(port: int) -> list[str]:
    return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread",
            "--threads", "2", "plain_wsgi:application"]  # fmt: skip


@pytest.mark.parametrize("server", ["cheroot", "gunicorn"])
def test_requests_in_flight_finish_on_cheroot_and_gunicorn(
    server: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    if server == "cheroot":
        live: CovguardServe | RunningServer = CovguardServe(
            ["plainapp:app", "--server", "cheroot"], cwd=plainapp
        )
    else:
        port = free_port()
        live = servers(gunicorn_gthread(port), cwd=plainapp, port=port).wait_listening()
    slow: dict[str, object] = {}

    def fetch_slow() -> None:
        answer = requests.get(f"{live.url}/slow", params="1.5", timeout=20)
        slow.update(status=answer.status_code, size=len(answer.content))

    try:
        client = threading.Thread(target=fetch_slow)
        client.start()
        # Under gunicorn each answer is one worker's: polling reaches the busy one soon.
        wait_in_flight(live.url, 1)
        assert live.shutdown().status_code == 202
        client.join(timeout=20)
        assert slow == {"status": 200, "size": 200_000}
        assert live.wait(timeout=15) == 0
        assert line_of(plainapp, AFTER_SLEEP) in measured_lines(plainapp, "plainapp")["plainapp.py"]
    finally:
        if isinstance(live, CovguardServe):
            live.stop()


# -- load: clients sending while the stop happens ---------------------------------------------


#: Rounds of each load-during-stop test; ``make stress`` runs 20 beside two busy loops.
ROUNDS = int(os.environ.get("COVGUARD_STOP_ROUNDS", "1"))
COUNTED = '        os.write(log, request_id.encode() + b"\\n")'
#: The same line in the ASGI app (tests/apps/notesapi.py).
COUNTED_ASGI = '        os.write(log, request.url.query.encode() + b"\\n")'


class Load:
    """Clients sending ``GET /counted?<id>`` in a loop until the server is gone (bounded).

    The app appends each id it serves to ``requests.log`` (one unbuffered write), so
    afterwards a failure can be told for what it is: a request the app served must
    have reached its client whole, or its response was cut short; a connection
    closed before the app saw the request is the server gone (the OS resets what
    is still in the listen backlog when the server closes its socket).
    """

    def __init__(self, url: str, clients: int = 4, limit: float = 15.0) -> None:
        self.url = url
        self.answered: set[str] = set()
        #: request id -> an answer other than the app's whole 200 "counted"
        self.wrong: dict[str, str] = {}
        #: request id -> the exception that ended a client (one each at most)
        self.failed: dict[str, str] = {}
        self._deadline = time.monotonic() + limit
        self._threads = [
            threading.Thread(target=self._run, args=(client,)) for client in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, client: int) -> None:
        with requests.Session() as session:
            for number in range(5000):
                if time.monotonic() > self._deadline:
                    return
                request_id = f"{client}-{number}"
                try:
                    answer = session.get(f"{self.url}/counted", params=request_id, timeout=10)
                except requests.RequestException as exc:
                    self.failed[request_id] = f"{type(exc).__name__}: {exc}"
                    return  # gone, or cut short: the app's log tells which
                if answer.status_code == 200 and answer.content == b"counted":
                    self.answered.add(request_id)
                else:
                    self.wrong[request_id] = f"{answer.status_code} {answer.content[:60]!r}"

    def wait_answered(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` requests were answered whole (a busy machine is slow)."""
        deadline = time.monotonic() + timeout
        while len(self.answered) < count:
            assert time.monotonic() < deadline, f"{len(self.answered)} answered in {timeout}s"
            time.sleep(0.02)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    def check(self, folder: Path, module: str = "plainapp", counted: str = COUNTED) -> None:
        """No request the app served went wrong, no answer was an error; lines saved."""
        served = set((folder / "requests.log").read_text().split())
        cut_short = {rid: why for rid, why in self.failed.items() if rid in served}
        assert self.wrong == {}, "every answer was the app's whole 200"
        assert cut_short == {}, "every request the app served reached its client whole"
        assert self.answered <= served
        measured = measured_lines(folder, module)[f"{module}.py"]
        assert line_of(folder, counted, module) in measured


#: ASGI servers started from their own command line on the FastAPI app (two workers where
#: they have them: the shutdown reaches one, the master stops all). hypercorn's and
#: daphne's own stops cut requests that arrive on a keep-alive connection as they begin
#: (alone, under this load: hypercorn 3 rounds of 8, daphne 2 of 4); the door drains
#: first, its answers asking clients to close their connections.
ASGI_UNDER_LOAD: dict[str, Callable[[int], list[str]]] = {
    "uvicorn (ASGI)": lambda port: [str(BIN / "uvicorn"), "notes_entry:app", "--host",
                                    "127.0.0.1", "--port", str(port)],
    "granian (ASGI)": lambda port: [str(BIN / "granian"), "--interface", "asgi",
                                    "notes_entry:app", "--workers", "2", "--host", "127.0.0.1",
                                    "--port", str(port)],
    "hypercorn (ASGI)": lambda port: [str(BIN / "hypercorn"), "notes_entry:app", "--bind",
                                      f"127.0.0.1:{port}", "--workers", "2"],
    "daphne (ASGI)": lambda port: [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                   "notes_entry:app"],
}  # fmt: skip


def asgi_under_load(server: str, folder: Path, servers: Callable[..., RunningServer]) -> None:
    """:func:`under_load` for an ASGI server."""
    (folder / ".coveragerc").write_text("[run]\nsource = .\nomit = notes_entry.py\n")
    port = free_port()
    live = servers(ASGI_UNDER_LOAD[server](port), cwd=folder, port=port).wait_listening()
    load = Load(live.url)
    load.wait_answered(25)
    assert live.shutdown().status_code == 202
    load.join()
    assert live.wait(timeout=15) == 0, live.output()
    load.check(folder, "notesapi", COUNTED_ASGI)
    assert "Traceback" not in live.output()


def under_load(server: str, folder: Path, servers: Callable[..., RunningServer]) -> None:
    """Stop ``server`` with the shutdown route while four clients keep sending."""
    if server in ASGI_UNDER_LOAD:
        asgi_under_load(server, folder, servers)
        return
    if server == "gunicorn":
        port = free_port()
        live: CovguardServe | RunningServer = servers(gunicorn_gthread(port), cwd=folder, port=port)
        live.wait_listening()
    else:
        live = CovguardServe(["plainapp:app", "--server", server], cwd=folder)
    try:
        load = Load(live.url)
        load.wait_answered(25)  # the stop comes once the clients are being served
        assert live.shutdown().status_code == 202
        load.join()
        assert live.wait(timeout=15) == 0
        load.check(folder)
    finally:
        if isinstance(live, CovguardServe):
            live.stop()
            assert "ERROR" not in live.stderr, live.stderr  # granian's "Unexpected exit"


@pytest.mark.parametrize("round_", range(ROUNDS), ids=lambda n: f"round{n + 1}")
@pytest.mark.parametrize(
    "server",
    ["waitress", "werkzeug", "cheroot", "wsgiref", "gunicorn", "granian", *ASGI_UNDER_LOAD],
)
def test_clients_under_load_never_see_a_5xx_or_a_cut_response(
    server: str, round_: int, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    under_load(server, plainapp, servers)


# -- concurrent control ---------------------------------------------------------------------------


def test_simultaneous_shutdowns_stop_once_and_save_once(plainapp: Path) -> None:
    live = CovguardServe(["plainapp:app", "--server", "werkzeug"], cwd=plainapp)
    try:
        live.get("/hello")
        barrier = threading.Barrier(5)
        answers: list[int] = []

        def shutdown() -> None:
            barrier.wait(timeout=10)
            with contextlib.suppress(requests.ConnectionError):
                answers.append(live.shutdown().status_code)

        threads = [threading.Thread(target=shutdown) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert answers
        assert set(answers) == {202}, "".join(live.stderr_lines())
        assert live.wait(timeout=10) == 0
        assert len(data_files(plainapp)) == 1
        assert line_of(plainapp, HELLO) in measured_lines(plainapp, "plainapp")["plainapp.py"]
    finally:
        live.stop()


def test_save_and_reset_racing_with_requests_leave_a_sound_data_file(plainapp: Path) -> None:
    live = CovguardServe(["plainapp:app"], cwd=plainapp)
    try:
        load = Load(live.url, clients=3, limit=20)
        control = []
        for round_ in range(30):
            route = "save" if round_ % 3 else "reset"
            control.append(
                requests.post(
                    f"{live.url}/__coverage__/{route}", headers=BEARER, timeout=30
                ).status_code
            )
        live.get("/hello")
        assert live.shutdown().status_code == 202
        load.join()
        assert live.wait(timeout=15) == 0
        assert set(control) == {200}
        load.check(plainapp)
        [path] = data_files(plainapp)
        with read_data(path) as data:  # a corrupt file would raise here
            assert data.measured_files()
        assert line_of(plainapp, HELLO) in measured_lines(plainapp, "plainapp")["plainapp.py"]
    finally:
        live.stop()


# -- signals and autosave ---------------------------------------------------------------------


def test_sigkill_loses_at_most_the_last_autosave_interval(plainapp: Path) -> None:
    live = CovguardServe(["plainapp:app", "--autosave", "0.5"], cwd=plainapp)
    try:
        assert live.get("/hello").text == "hello"
        time.sleep(1.5)  # three autosave intervals
        os.kill(live.pid, signal.SIGKILL)
        assert live.wait() == -signal.SIGKILL
        assert line_of(plainapp, HELLO) in measured_lines(plainapp, "plainapp")["plainapp.py"]
    finally:
        live.stop()


def test_without_autosave_sigkill_loses_everything(plainapp: Path) -> None:
    """The reason autosave exists (and proof the test above measures something)."""
    live = CovguardServe(["plainapp:app"], cwd=plainapp)
    try:
        assert live.get("/hello").text == "hello"
        time.sleep(1.5)
        os.kill(live.pid, signal.SIGKILL)
        live.wait()
        assert data_files(plainapp) == []
    finally:
        live.stop()


@pytest.mark.core_independent
def test_a_bad_autosave_value_is_one_line(plainapp: Path) -> None:
    done = subprocess.run(
        [str(BIN / "python"), "-m", "wsgi_covguard", "serve", "plainapp:app"],
        cwd=plainapp, env={**os.environ, "COVGUARD_TOKEN": TOKEN, "COVGUARD_AUTOSAVE": "soon"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "covguard: COVGUARD_AUTOSAVE='soon' is not a number of seconds;"
        " set e.g. COVGUARD_AUTOSAVE=5\n"
    )


# -- storage ---------------------------------------------------------------------------------------


def test_a_full_disk_is_reported_in_one_line_and_earlier_data_survives(
    plainapp: Path, small_disk: Path
) -> None:
    env = {**os.environ, "COVERAGE_FILE": str(small_disk / ".coverage")}
    live = CovguardServe(["plainapp:app", "--contexts"], cwd=plainapp, env=env)
    try:
        assert live.get("/hello").text == "hello"
        assert requests.post(f"{live.url}/__coverage__/save", headers=BEARER, timeout=30).ok
        filler = small_disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as file:
            for _ in range(4096):
                file.write(b"\0" * 1024)
                file.flush()
        statuses = []
        for number in range(40):  # long context names: data that needs new pages
            name = f"context {number} " + "x" * 900
            answer = requests.post(
                f"{live.url}/__coverage__/context", data=name, headers=BEARER, timeout=30
            )
            statuses.append(answer.status_code)
            assert TOKEN not in answer.text
            live.get("/slow", params="0")
        statuses.append(
            requests.post(f"{live.url}/__coverage__/save", headers=BEARER, timeout=30).status_code
        )
        assert 507 in statuses, "the full disk was reported"
        assert set(statuses) <= {200, 507}, "and never as a 5xx of another kind"
        assert live.get("/hello").text == "hello", "the server goes on"
        assert line_of(plainapp, HELLO) in measured_lines(small_disk, "plainapp")["plainapp.py"]
        filler.unlink()
        assert live.shutdown().status_code == 202
        assert live.wait(timeout=15) == 0
        failures = [
            line for line in live.stderr.splitlines() if "could not save coverage data" in line
        ]
        assert failures, "said on stderr, one line each"
        assert all(line.startswith("covguard: ") for line in failures)
        assert "Traceback" not in live.stderr
        assert line_of(plainapp, HELLO) in measured_lines(small_disk, "plainapp")["plainapp.py"]
    finally:
        live.stop()


# -- hostile paths -----------------------------------------------------------------------------


@pytest.mark.core_independent
@pytest.mark.parametrize(
    "path",
    # Not "//__shutdown__": http.server (werkzeug, wsgiref) rewrites it to "/__shutdown__"
    # before anyone sees the request, so it is that path.
    ["/%5F%5Fshutdown%5F%5F", "/__shutdown%5F_", "/__SHUTDOWN__", "/__shutdown__/",
     "/x/../__shutdown__", "/./__shutdown__", "/__coverage__/%72eset", "/__coverage__/reset/"],
)  # fmt: skip
def test_paths_that_resemble_a_control_path_are_never_honoured(path: str, plainapp: Path) -> None:
    live = CovguardServe(["plainapp:app", "--server", "werkzeug"], cwd=plainapp)
    try:
        # Seeded: a reset that was honoured would erase this file, a save rename it.
        assert live.get("/hello").text == "hello"
        assert requests.post(f"{live.url}/__coverage__/save", headers=BEARER, timeout=30).ok
        seeded = data_files(plainapp)
        assert line_of(plainapp, HELLO) in measured_lines(plainapp, "plainapp")["plainapp.py"]
        assert live.get("/slow", params="0").status_code == 200  # lines a save would add
        connection = http.client.HTTPConnection(live.url.removeprefix("http://"), timeout=10)
        connection.request("POST", path, headers=BEARER)
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status < 500
        assert answer.status != 202
        assert TOKEN.encode() not in body
        assert live.get("/hello").text == "hello", "still serving"
        assert data_files(plainapp) == seeded, "neither erased nor saved again"
    finally:
        live.stop()
