"""Security hardening: no side door for the token, pages locked to their origin, /tmp distrusted.

One test per finding of the review (issue 13), each against a real server, real
subprocesses and real files on loopback.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from live import (
    BIN,
    DASHBOARD,
    FLASK_EXAMPLE,
    ROOT,
    TEST_APPS,
    TOKEN,
    CovguardServe,
    data_files,
    free_port,
)  # fmt: skip

from wsgi_covguard import dashboard_password
from wsgi_covguard.pytest_plugin import LiveServer as PluginServer

#: What these check is the door's and the server's, the same on every core: one Python.
pytestmark = pytest.mark.core_independent

BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = ("anyone", DASHBOARD)
ENV = {**os.environ, "COVGUARD_TOKEN": TOKEN}


def covguard(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "covguard"), *args], capture_output=True, text=True, timeout=60,
        **{"env": ENV, **kwargs},  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def flask_live(tmp_path: Path) -> Iterator[tuple[CovguardServe, Path]]:
    folder = tmp_path / "flask"
    shutil.copytree(FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    live = CovguardServe(["wsgi:application"], cwd=folder)
    try:
        yield live, folder
    finally:
        live.stop()


# -- 1. redirects never carry the token ------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 204 and keeps the Authorization headers it was sent."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler], host: str) -> http.server.HTTPServer:
    server_class = type("Server", (http.server.ThreadingHTTPServer,), {})
    if ":" in host:
        server_class.address_family = socket.AF_INET6
    server = server_class((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def redirect_to_elsewhere() -> Iterator[tuple[str, str, list[str | None]]]:
    """A server on 127.0.0.1 that answers every request with a 302 to a recorder on ::1."""
    seen: list[str | None] = []
    recorder = _serve(type("Recorder", (_Recorder,), {"seen": seen}), "::1")
    target = f"http://[::1]:{recorder.server_address[1]}/collect-here"

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    redirector = _serve(Redirector, "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{redirector.server_address[1]}", target, seen
    finally:
        for server in (redirector, recorder):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("command", ["collect", "report", "shutdown"])
def test_a_redirect_never_carries_the_token(
    command: str, redirect_to_elsewhere: tuple[str, str, list[str | None]], tmp_path: Path
) -> None:
    url, target, seen = redirect_to_elsewhere
    done = covguard(command, url, cwd=tmp_path)
    assert done.returncode != 0
    assert seen == [], "the redirect's target got no request at all"
    [line] = done.stderr.splitlines()
    assert line.startswith(f"covguard: {url}/")
    assert f"a redirect to {target}; the token is not sent there" in line
    assert TOKEN not in done.stdout + done.stderr


def test_a_proxy_in_the_environment_never_sees_the_token(
    redirect_to_elsewhere: tuple[str, str, list[str | None]], flask_live: tuple[CovguardServe, Path]
) -> None:
    _, target, seen = redirect_to_elsewhere
    live, folder = flask_live
    proxy = target.removesuffix("/collect-here")
    env = {**ENV, "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    done = covguard("collect", live.url, cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    assert seen == []


# -- 2. the token stays out of the process list ------------------------------------------------


def documented_commands() -> list[tuple[str, str]]:
    """Every command line the docs and the dashboard show: (file, line)."""
    sources = [
        ROOT / "README.md",
        ROOT / "SECURITY.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("examples/*/README.md"),
        ROOT / "wsgi_covguard" / "dashboard.html",
    ]
    found = []
    for source in sources:
        for line in source.read_text().splitlines():
            if re.search(
                r"\b(covguard|curl|python|pytest|waitress-serve|gunicorn|granian)\b", line
            ):
                found.append((source.name, line))
    return found


def test_no_documented_command_puts_the_token_in_argv() -> None:
    commands = documented_commands()
    assert len(commands) > 30
    for source, line in commands:
        assert not re.search(r"--token\s+[^-\s]", line), (source, line)
        assert not re.search(r"Bearer \$", line), (source, line)  # expands into curl's argv
        assert not re.search(r"\bcurl\b.*\s-u\s", line), (source, line)


def test_token_file_and_stdin_work_and_token_warns(flask_live: tuple[CovguardServe, Path]) -> None:
    live, folder = flask_live
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    from_file = covguard("collect", live.url, "--token-file", str(token_file), cwd=folder,
                         env=plain_env)  # fmt: skip
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stderr == ""
    from_stdin = covguard("collect", live.url, "--token-file", "-", cwd=folder, env=plain_env,
                          input=TOKEN + "\n")  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr
    in_argv = covguard("collect", live.url, "--token", TOKEN, cwd=folder, env=plain_env)
    assert in_argv.returncode == 0
    assert in_argv.stderr.splitlines()[0] == (
        "covguard: --token shows the token to every user of this machine (the process list);"
        " use COVGUARD_TOKEN or --token-file instead"
    )
    assert TOKEN not in in_argv.stdout + in_argv.stderr


def test_our_own_processes_never_carry_the_token_in_argv(tmp_path: Path) -> None:
    """`covguard run` starts `covguard serve` and the test command: /proc shows their argv."""
    shutil.copytree(TEST_APPS, tmp_path / "app")
    watch = (
        "import os, sys\n"
        "leaks = []\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try: argv = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
        "    except OSError: continue\n"
        "    if os.environ['COVGUARD_TOKEN'].encode() in argv: leaks.append(argv)\n"
        "sys.exit(f'token in argv: {leaks}' if leaks else 0)\n"
    )
    done = covguard("run", "plainapp:app", "--", sys.executable, "-c", watch, cwd=tmp_path / "app")
    assert done.returncode == 0, done.stdout + done.stderr


# -- 3. the pages are locked to their own origin ------------------------------------------------

LOCKED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def test_every_control_answer_is_locked_to_its_origin(
    flask_live: tuple[CovguardServe, Path],
) -> None:
    live, _ = flask_live
    url = f"{live.url}/__coverage__"
    answers = [
        requests.get(f"{url}/", auth=BASIC, timeout=30),
        requests.get(f"{url}/summary", auth=BASIC, timeout=60),
        requests.get(f"{url}/html/", auth=BASIC, timeout=60),
        requests.get(f"{url}/snapshots", auth=BASIC, timeout=30),
        requests.get(f"{url}/status", headers=BEARER, timeout=30),
        requests.get(f"{url}/data", headers=BEARER, timeout=30),
        requests.get(f"{url}/", timeout=30),  # 401
        requests.post(f"{live.url}/__shutdown__", timeout=30),  # 403
        requests.get(f"{live.url}/__shutdown__", headers=BEARER, timeout=30),  # 405
        requests.get(f"{url}/snapshots/nope", auth=BASIC, timeout=30),  # 404
    ]
    assert [a.status_code for a in answers] == [200] * 6 + [401, 403, 405, 404]
    for answer in answers:
        for header, value in LOCKED.items():
            assert answer.headers.get(header) == value, (answer.url, header)
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'none'" in policy or "default-src 'self'" in policy
    assert (
        "Cache-Control" not in live.get("/").headers
        or live.get("/").headers["Cache-Control"] != "no-store"
    ), "the app's own answers are untouched"
    assert "X-Frame-Options" not in live.get("/").headers


# -- 4. a GET changes nothing -----------------------------------------------------------------


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_reading_routes_leave_the_data_folder_unchanged(
    flask_live: tuple[CovguardServe, Path],
) -> None:
    live, folder = flask_live
    url = f"{live.url}/__coverage__"
    assert requests.post(f"{url}/snapshot", data="first", headers=BEARER, timeout=30).ok
    live.get("/")
    live.get("/api/tasks")
    before = folder_state(folder)
    [snapshot] = requests.get(f"{url}/snapshots", auth=BASIC, timeout=30).json()["snapshots"]
    for path in ("/summary", "/html/", "/html/index.html", "/diff?from=" + snapshot, "/snapshots",
                 "/snapshots/" + snapshot, "/"):  # fmt: skip
        assert requests.get(url + path, auth=BASIC, timeout=60).status_code == 200, path
    for path in ("/status", "/data"):
        assert requests.get(url + path, headers=BEARER, timeout=60).status_code == 200, path
    assert folder_state(folder) == before, "no save, no report, no file touched by a GET"
    assert live.shutdown().status_code == 202
    assert live.wait() == 0


def test_the_html_report_follows_new_requests_without_a_refresh_query(
    flask_live: tuple[CovguardServe, Path],
) -> None:
    live, _ = flask_live
    url = f"{live.url}/__coverage__/html/"
    first = requests.get(url, auth=BASIC, timeout=60).text
    live.get("/api/tasks")
    live.get("/tasks/999")
    second = requests.get(url, auth=BASIC, timeout=60).text
    total = re.compile(r'<span class="pc_cov">(\d+%)</span>')
    assert total.search(first)
    assert total.search(first)[1] != total.search(second)[1], "the report shows the new lines"  # type: ignore[index]


# -- 5. symlinks in the data folder ----------------------------------------------------------


def test_planted_snapshot_links_are_not_served_nor_written_through(
    flask_live: tuple[CovguardServe, Path], tmp_path: Path
) -> None:
    live, folder = flask_live
    secret = tmp_path / "secret"
    secret.write_text("private key material\n")
    secret.chmod(0o600)
    planted = folder / ".coverage-snapshot-20000101T000000.000-planted"
    planted.symlink_to(secret)
    url = f"{live.url}/__coverage__"
    assert planted.name not in requests.get(f"{url}/snapshots", auth=BASIC, timeout=30).text
    served = requests.get(f"{url}/snapshots/{planted.name}", auth=BASIC, timeout=30)
    assert served.status_code == 404
    assert b"private key" not in served.content
    diff = requests.get(f"{url}/diff", params={"from": planted.name}, auth=BASIC, timeout=30)
    assert diff.status_code == 404
    assert secret.read_text() == "private key material\n"


def test_a_snapshot_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    from wsgi_covguard.safefiles import create_private

    target = tmp_path / "target"
    target.write_text("keep me\n")
    link = tmp_path / ".coverage-snapshot-next"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        create_private(str(link), b"overwritten")
    assert target.read_text() == "keep me\n"
    fresh = tmp_path / ".coverage-snapshot-fresh"
    create_private(str(fresh), b"data")
    assert fresh.read_bytes() == b"data"
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


# -- 6. the pre-fork run folder --------------------------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "open-mode"])
def test_a_foreign_run_folder_is_one_line(planted: str, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    folder = runtime / f"covguard-{os.getuid()}"
    if planted == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        folder.symlink_to(elsewhere)
    else:
        folder.mkdir()
        folder.chmod(0o777)
    app = tmp_path / "app"
    shutil.copytree(TEST_APPS, app)
    done = subprocess.run(
        [sys.executable, "-m", "wsgi_covguard", "serve", "plainapp:app", "--server", "gunicorn",
         "--port", "0"],
        cwd=app, env={**ENV, "XDG_RUNTIME_DIR": str(runtime)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("covguard:")]
    assert str(folder) in line
    assert "remove it" in line


# -- 7. small leaks ------------------------------------------------------------------------


def test_the_plugins_server_hides_its_token() -> None:
    shown = repr(PluginServer(url="http://127.0.0.1:1", token=TOKEN, process=None))  # type: ignore[arg-type]
    assert TOKEN not in shown
    assert "http://127.0.0.1:1" in shown


def test_nothing_of_ours_is_left_in_tmp_after_a_clean_exit(tmp_path: Path) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    folder = tmp_path / "flask"
    shutil.copytree(FLASK_EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    live = CovguardServe(["wsgi:application"], cwd=folder, env=env, token=None)
    try:
        deadline = time.monotonic() + 10
        while not any(" the token is in " in line for line in live.stderr_lines()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        said = next(line for line in live.stderr_lines() if " the token is in " in line)
        live.token = Path(said.split(" the token is in ")[1].strip()).read_text().strip()
        auth = ("anyone", dashboard_password(live.token))
        assert requests.get(f"{live.url}/__coverage__/html/", auth=auth, timeout=60).ok
        assert requests.get(f"{live.url}/__coverage__/summary", auth=auth, timeout=60).ok
        assert live.shutdown().status_code == 202
        assert live.wait() == 0
    finally:
        live.stop()
    assert list(private_tmp.iterdir()) == [], "token file, reports and combined data: all gone"


def test_deeply_nested_json_is_a_4xx(flask_live: tuple[CovguardServe, Path]) -> None:
    live, _ = flask_live
    body = "[" * 100_000 + "]" * 100_000
    for route, auth in (("context", BEARER), ("snapshot", BEARER)):
        answer = requests.post(
            f"{live.url}/__coverage__/{route}", data=body, timeout=30,
            headers={**auth, "Content-Type": "application/json"},
        )  # fmt: skip
        assert 400 <= answer.status_code < 500, (route, answer.status_code)
    assert live.get("/").status_code == 200


class _NotCoverage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>this is not coverage data</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_body_that_is_not_coverage_data_is_one_line_and_never_written(tmp_path: Path) -> None:
    server = _serve(_NotCoverage, "127.0.0.1")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for command in ("report", "collect"):
            done = covguard(command, url, cwd=tmp_path)
            assert done.returncode != 0
            assert "Traceback" not in done.stderr
            [line] = done.stderr.splitlines()
            assert line == (
                f"covguard: {url} sent something that is not coverage data;"
                " is it a covguard server?"
            )
        assert list(tmp_path.iterdir()) == [], "nothing collected"
    finally:
        server.shutdown()
        server.server_close()


# -- 8. a stalling client holds the stop at most drain_timeout -----------------------------

STALLING_ENTRY = """\
import wsgi_covguard
wsgi_covguard.start()
from plainapp import app
application = wsgi_covguard.CovGuard(app, drain_timeout=2)
"""


@pytest.mark.parametrize("stall", ["headers", "in-the-app"])
def test_a_stalling_client_holds_the_stop_at_most_drain_timeout(stall: str, tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(TEST_APPS, app)
    (app / "stalling.py").write_text(STALLING_ENTRY)
    port = free_port()
    script = ("import stalling; from werkzeug.serving import run_simple;"
              f" run_simple('127.0.0.1', {port}, stalling.application, threaded=True)")  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=app,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stalled = socket.socket()
    try:
        _wait_listening(port)
        stalled.connect(("127.0.0.1", port))
        if stall == "headers":
            stalled.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        else:
            stalled.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n")  # the app sleeps
        time.sleep(0.3)
        started = time.monotonic()
        answer = requests.post(f"http://127.0.0.1:{port}/__shutdown__", headers=BEARER, timeout=10)
        assert answer.status_code == 202
        server.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        stalled.close()
        if server.poll() is None:
            server.kill()
        output = server.communicate(timeout=10)[0]
    assert server.returncode == 0, output
    assert took <= 2 + 1, f"the stop took {took:.1f}s"
    if stall == "in-the-app":
        assert "covguard: cut GET /slow: still running at drain_timeout=2s" in output, output
    assert data_files(app), "and the data was saved"


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("not listening")
