"""In-process tests of the pure logic: the token, the loopback rule, the settings' order,
the control routes' rules, the choice of a stopper and of a core, app loading.

The end-to-end tests prove the whole against real servers; these pin each rule on its
own, in milliseconds (werkzeug's ``EnvironBuilder`` makes the requests, as werkzeug
tests its own middleware).
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import coverage
import pytest
from werkzeug.exceptions import NotFound
from werkzeug.test import EnvironBuilder

from wsgi_covguard.apps import load_app
from wsgi_covguard.auth import Token, dashboard_password, is_loopback
from wsgi_covguard.errors import ConfigError, ExitCode, SaveError
from wsgi_covguard.messages import Answer, ControlRequest, json_answer
from wsgi_covguard.middleware import _control_request, _response
from wsgi_covguard.routes import FORWARDING, NOTHING_ALLOWED, Route, Routes
from wsgi_covguard.servers import SERVERS, Options, check_available, family, wsgi_stopper
from wsgi_covguard.settings import Settings, server_url
from wsgi_covguard.spawn import READY_LINE, serve_argv
from wsgi_covguard.startup import choose_core
from wsgi_covguard.stopping import InterruptMain

SECRET = "unit-token-0123456789"
BEARER = {"Authorization": f"Bearer {SECRET}"}

pytestmark = pytest.mark.in_process


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


# -- the token ---------------------------------------------------------------------------


def test_a_short_token_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="5 characters long; use at least 16"):
        Token("short")


def test_the_token_never_shows_in_its_repr() -> None:
    assert SECRET not in repr(Token(SECRET))
    assert SECRET not in repr(Settings.read(token=SECRET, environ={}))


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (f"Bearer {SECRET}", True),
        (f"bearer {SECRET}", True),
        (f"Bearer   {SECRET}", True),  # RFC 7235: several spaces
        (f"Bearer {SECRET}x", False),
        (f"Basic {SECRET}", False),
        ("Bearer é", False),
        ("", False),
    ],
)
def test_bearer(header: str, matches: bool) -> None:
    assert Token(SECRET).matches_bearer(header) is matches


def test_basic_checks_the_password_only_and_it_is_never_the_token() -> None:
    from werkzeug.datastructures import Authorization

    token = Token(SECRET)
    reader = dashboard_password(SECRET)
    assert len(reader) == 32
    assert SECRET not in reader
    assert token.matches_basic(Authorization.from_header(basic(reader)["Authorization"]))
    assert not token.matches_basic(Authorization.from_header(basic(SECRET)["Authorization"]))
    assert not token.matches_basic(Authorization.from_header(basic("wrong")["Authorization"]))
    assert not token.matches_basic(Authorization.from_header(f"Bearer {SECRET}"))
    assert not token.matches_basic(None)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("", False),
        (None, False),
        ("localhost", False),
    ],
)
def test_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


# -- settings ------------------------------------------------------------------------------


def test_arguments_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {
        "COVGUARD_TOKEN": "from-the-environment-1",
        "COVGUARD_ALLOW_REMOTE": "1",
        "COVGUARD_AUTOSAVE": "7",
        "COVGUARD_URL": "http://127.0.0.1:1",
    }
    settings = Settings.read(environ=env)
    assert settings.token is not None
    assert settings.token.reveal() == "from-the-environment-1"
    assert (settings.allow_remote, settings.autosave, settings.url) == (
        True,
        7.0,
        env["COVGUARD_URL"],
    )
    given = Settings.read(token=SECRET, allow_remote=False, autosave=2, url="http://x", environ=env)
    assert given.token is not None
    assert given.token.reveal() == SECRET
    assert (given.allow_remote, given.autosave, given.url) == (False, 2, "http://x")
    defaults = Settings.read(token=SECRET, environ={})
    assert (defaults.allow_remote, defaults.autosave, defaults.url) == (False, None, None)


def test_without_a_token_nothing_else_is_read() -> None:
    inert = Settings.read(environ={"COVGUARD_ALLOW_REMOTE": "yes", "COVGUARD_AUTOSAVE": "x"})
    assert inert.token is None
    assert not inert.allow_remote
    assert inert.autosave is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COVGUARD_ALLOW_REMOTE": "yes"}, "COVGUARD_ALLOW_REMOTE='yes' is neither 1 nor 0"),
        ({"COVGUARD_AUTOSAVE": "soon"}, "COVGUARD_AUTOSAVE='soon' is not a number of seconds"),
        ({"COVGUARD_AUTOSAVE": "0"}, "autosave=0.0 must be a number of seconds above 0"),
        ({"COVGUARD_TOKEN": "short"}, "5 characters long"),
    ],
)
def test_a_bad_setting_is_named_with_its_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.read(environ={"COVGUARD_TOKEN": SECRET, **env})


def test_a_good_token_argument_does_not_read_a_bad_variable() -> None:
    settings = Settings.read(token=SECRET, environ={"COVGUARD_TOKEN": "short"})
    assert settings.token is not None


def test_the_server_url_is_the_argument_then_the_variable() -> None:
    assert server_url("http://a", {"COVGUARD_URL": "http://b"}) == "http://a"
    assert server_url(None, {"COVGUARD_URL": "http://b"}) == "http://b"
    assert server_url(None, {}) is None


# -- the control routes --------------------------------------------------------------------


def echo(request: ControlRequest, rest: str = "") -> Answer:
    return json_answer({"method": request.method, "rest": rest, "to": request.args.get("to")})


def failing(error: BaseException) -> Any:
    def handler(request: ControlRequest) -> Answer:
        raise error

    return handler


ROUTES = Routes(
    [
        Route("/__shutdown__", "POST", echo),
        Route("/__coverage__/save", "POST", echo),
        Route("/__coverage__/status", "GET", echo),
        Route("/__coverage__/", "GET", echo, read_only=True),
        Route("/__coverage__/html/<rest:rest>", "GET", echo, read_only=True),
        Route("/__coverage__/gone", "GET", failing(NotFound("no such page")), read_only=True),
        Route("/__coverage__/full", "GET", failing(SaveError("could not save: disk full"))),
        Route("/__coverage__/io", "GET", failing(OSError("read-only file system"))),
        Route("/__coverage__/early", "GET", failing(coverage.CoverageException("No data"))),
    ],
    token=Token(SECRET),
    allow_remote=False,
)


def ask(
    path: str,
    method: str = "GET",
    *,
    raw: str | None = None,
    remote: str = "127.0.0.1",
    **headers: str,
) -> Answer | None:
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    environ["REMOTE_ADDR"] = remote
    if raw is not None:
        environ["RAW_URI"] = raw
    return ROUTES.answer(_control_request(environ))


def test_an_authenticated_request_reaches_its_handler_with_the_query() -> None:
    answer = ask("/__coverage__/status?to=start", **BEARER)
    assert answer is not None
    assert answer.status == 200
    assert json.loads(answer.body) == {"method": "GET", "rest": "", "to": "start"}


def test_every_answer_is_locked_to_its_origin() -> None:
    for answer in (ask("/__coverage__/status", **BEARER), ask("/__coverage__/save")):
        assert answer is not None
        assert answer.headers["Content-Security-Policy"] == NOTHING_ALLOWED
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["GET", "HEAD", "post", "PUT"])
def test_a_wrong_method_is_405_with_allow_before_anything_else(method: str) -> None:
    answer = ask("/__shutdown__", method, remote="10.0.0.1")
    assert answer is not None
    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"


@pytest.mark.parametrize("header", FORWARDING)
def test_a_request_through_a_proxy_is_remote_even_from_loopback(header: str) -> None:
    answer = ask("/__shutdown__", "POST", **BEARER, **{header: "127.0.0.1"})
    assert answer is not None
    assert answer.status == 403
    error = json.loads(answer.body)["error"]
    assert f"came through a proxy ({header})" in error
    assert "127.0.0.1" not in error


def test_a_remote_client_is_refused_even_with_the_token() -> None:
    answer = ask("/__coverage__/status", remote="10.0.0.1", **BEARER)
    assert answer is not None
    assert answer.status == 403
    assert b"COVGUARD_ALLOW_REMOTE=1" in answer.body


def test_pages_ask_a_browser_for_the_dashboard_password_never_the_token() -> None:
    asked = ask("/__coverage__/")
    assert asked is not None
    assert asked.status == 401
    assert asked.headers["WWW-Authenticate"].startswith("Basic ")
    assert b"`covguard dashboard` prints it" in asked.body
    answered = ask("/__coverage__/", **basic(dashboard_password(SECRET)))
    assert answered is not None
    assert answered.status == 200
    # The token as a password: a browser would send it to the app's paths too.
    refused = ask("/__coverage__/", **basic(SECRET))
    assert refused is not None
    assert refused.status == 401
    assert b"not the token: the dashboard's password" in refused.body
    assert SECRET.encode() not in refused.body


def test_routes_that_change_state_take_the_bearer_token_only() -> None:
    reader = dashboard_password(SECRET)
    for headers in (
        {}, basic(SECRET), basic(reader), {"Authorization": f"Bearer {reader}"},
        {"Authorization": "Bearer wrong-token-0123456789"},
    ):  # fmt: skip
        answer = ask("/__coverage__/save", "POST", **headers)
        assert answer is not None
        assert answer.status == 403
        assert SECRET.encode() not in answer.body


def test_a_tree_route_takes_the_rest_of_the_path() -> None:
    for path, rest in (
        ("/__coverage__/html/", ""),
        ("/__coverage__/html/d/x.js", "d/x.js"),
        ("/__coverage__/html//etc/passwd", "/etc/passwd"),
    ):
        answer = ask(path, **BEARER)
        assert answer is not None
        assert json.loads(answer.body)["rest"] == rest


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/__coverage__",
        "/__coverage__/html",
        "/__coverage__/nothing",
        "/__coverage__/save/",
        "/__shutdownx",
        "/app/__shutdown__",
    ],
)
def test_other_paths_are_the_apps(path: str) -> None:
    assert ask(path, "POST", **BEARER) is None


def test_a_path_spelled_another_way_is_the_apps() -> None:
    assert ask("/__shutdown__", "POST", raw="/%5F%5Fshutdown%5F%5F", **BEARER) is None
    assert ask("/__shutdown__", "POST", raw="/__shutdown__?x=1", **BEARER) is not None
    assert ask("/__shutdown__", "POST", raw="http://h/__shutdown__", **BEARER) is not None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/__coverage__/gone", 404),
        ("/__coverage__/full", 507),
        ("/__coverage__/io", 507),
        ("/__coverage__/early", 409),
    ],
)
def test_handler_errors_are_one_line_json_answers(path: str, status: int) -> None:
    answer = ask(path, **BEARER)
    assert answer is not None
    assert answer.status == status
    assert answer.body.count(b"\n") == 1
    assert json.loads(answer.body)["error"]


# -- stopping, cores, apps, the command ----------------------------------------------------


@pytest.mark.parametrize("name", list(SERVERS))
def test_each_registered_server_is_known_by_its_name_and_installed_by_its_extra(
    name: str,
) -> None:
    support = family(name)
    assert support.name == name
    assert support.serves in ("wsgi", "asgi", "both")
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"
    ]["optional-dependencies"]
    if support.extra is not None:
        assert support.extra in extras, f"pyproject.toml has no extra [{support.extra}]"
    check_available(name)  # installed here: its module is found
    if support.takes_workers:
        check_available(name, Options(workers=2))
    else:
        with pytest.raises(ConfigError, match=f"{name} serves from one process"):
            check_available(name, Options(workers=2))


def test_a_prefork_request_in_a_process_with_no_master_signals_no_parent() -> None:
    # This process (pytest's) is no server's worker: its parent is sent nothing, whatever
    # the environ claims. (A real worker stops its master: tests/test_gunicorn.py, ...)
    assert isinstance(wsgi_stopper({"gunicorn.socket": object()}), InterruptMain)
    assert isinstance(wsgi_stopper({"SERVER_SOFTWARE": "Granian"}), InterruptMain)


def test_with_no_server_on_the_stack_the_main_thread_is_interrupted() -> None:
    assert isinstance(wsgi_stopper({}), InterruptMain)


def test_the_core_follows_what_the_configuration_needs() -> None:
    def chosen(contexts: bool = False, **run: Any) -> object:
        cov = coverage.Coverage(data_file=None, config_file=False)
        for name, value in run.items():
            cov.set_option(f"run:{name}", value)
        choose_core(cov, contexts=contexts)
        return cov.get_option("run:core")

    sysmon = sys.version_info >= (3, 12)
    # Contexts under sysmon where this coverage.py records them right (covcompat).
    with_contexts = sysmon and coverage.version_info >= (7, 18)
    assert chosen(contexts=True) == ("sysmon" if with_contexts else "ctrace")
    assert chosen(contexts=True, branch=True) == "ctrace"
    assert chosen(core="pytrace") == "pytrace"
    assert chosen() == ("sysmon" if sysmon else None)
    assert chosen(branch=True) == ("sysmon" if sys.version_info >= (3, 14) else None)
    if sysmon and not with_contexts:
        with pytest.raises(ConfigError, match="cannot record dynamic contexts"):
            chosen(contexts=True, core="sysmon")
    else:  # (before 3.12, coverage.py itself runs ctrace instead, which records them)
        assert chosen(contexts=True, core="sysmon") == "sysmon"


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unit_apps.py").write_text(
        textwrap.dedent("""\
        def app(environ, start_response):
            return []
        def factory():
            return app
        def takes_nothing():
            pass
        number = 3
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("apps")
def test_load_app_takes_an_attribute_or_a_factory() -> None:
    assert load_app("unit_apps:app") is load_app("unit_apps") is load_app("unit_apps:factory()")


@pytest.mark.usefixtures("apps")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":app", "is not of the form"),
        ("no_such_module_here:app", "no such module"),
        ("unit_apps:missing", "has no attribute 'missing'"),
        ("unit_apps:number", "not a WSGI"),
        ("unit_apps:factory", "did you mean unit_apps:factory()?"),
        ("unit_apps:takes_nothing()", "not a WSGI"),
    ],
)
def test_load_app_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_app(spec)


def test_the_serve_command_line_and_its_ready_line() -> None:
    argv = serve_argv("wsgi:app", server="gunicorn", workers=4, contexts=True)
    assert " ".join(argv[1:]) == (
        "-m wsgi_covguard serve wsgi:app --host 127.0.0.1 --port 0 --app-dir . --server gunicorn"
        " --workers 4 --contexts"
    )
    assert "--server" not in serve_argv("asgi:app")  # serve chooses, by the app's kind
    ready = READY_LINE.match("covguard: serving wsgi:app on http://127.0.0.1:5 (waitress, ...)")
    assert ready is not None
    assert ready["url"] == "http://127.0.0.1:5"


def test_the_knock_of_the_announcing_thread_takes_no_import_lock() -> None:
    """granian's workers are forked while that thread knocks: a module lock it held at the
    fork stays held in the worker, which then hung in its first ``str.encode("idna")``."""
    import subprocess

    probe = textwrap.dedent("""
        import socket, sys
        from wsgi_covguard.serving import _accepts
        listener = socket.create_server(("127.0.0.1", 0))
        address = listener.getsockname()
        seen = []
        sys.meta_path.insert(0, type("Spy", (), {"find_spec": staticmethod(
            lambda name, *rest: seen.append(name))})())
        assert _accepts(socket.AF_INET, address)
        print(seen)
        socket.create_connection(address).close()  # what the thread did before
        print(seen)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    knocked, resolved = done.stdout.splitlines()
    assert knocked == "[]"
    assert "'encodings.idna'" in resolved, "the spy sees the import a lookup makes"


def test_an_inert_asgi_door_steps_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a token the door's call is the app's own (no coroutine of ours per request),
    and what servers look at to tell ASGI 3 from ASGI 2 still says ``async``."""
    import asyncio
    import inspect

    from wsgi_covguard import CovGuardASGI

    monkeypatch.delenv("COVGUARD_TOKEN", raising=False)
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    class App:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("object")

    for wrapped in (app, App()):
        door = CovGuardASGI(wrapped)
        assert isinstance(door, CovGuardASGI)
        assert not door.enabled
        assert inspect.iscoroutinefunction(door.__call__)
        assert asyncio.iscoroutinefunction(door.__call__)
        asyncio.run(door({"type": "http"}, None, None))
    assert CovGuardASGI(app).__call__ is app
    assert seen == ["http", "object"]


def test_our_threads_leave_the_servers_signals_to_the_server() -> None:
    """A process signal goes to any thread not blocking it; CPython only wakes a main thread
    blocked on a lock when the signal lands there (granian's workers wait so)."""
    import signal

    from wsgi_covguard.threads import start_thread

    seen: list[set[int]] = []
    start_thread(lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), name="t").join()
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= seen[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, []), "this one's own"


def test_exit_codes_and_the_prefix_of_errors() -> None:
    assert (ExitCode.OK, ExitCode.FAIL, ExitCode.ERROR, ExitCode.INTERRUPTED) == (0, 1, 2, 130)
    error = ConfigError("the port 1 is taken")
    assert str(error) == "the port 1 is taken"
    assert error.code == "covguard: the port 1 is taken"


def test_messages_go_through_the_covguard_logger(caplog: pytest.LogCaptureFixture) -> None:
    from wsgi_covguard.log import say

    with caplog.at_level(logging.INFO, logger="covguard"):
        say("one line", logging.WARNING)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("covguard", logging.WARNING, "one line")
    ]


def test_every_public_name_says_what_it_is_for() -> None:
    import importlib
    import inspect
    import pkgutil

    import wsgi_covguard

    missing = []
    for found in pkgutil.iter_modules(wsgi_covguard.__path__):
        if found.name == "__main__":
            continue
        module = importlib.import_module(f"wsgi_covguard.{found.name}")
        if not module.__doc__:
            missing.append(found.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__doc__ is None:
                missing.append(f"{found.name}.{name}")
            for attribute, value in vars(obj).items() if inspect.isclass(obj) else ():
                function = value.fget if isinstance(value, property) else value
                public = not attribute.startswith("_") and inspect.isfunction(function)
                if public and not function.__doc__:
                    missing.append(f"{found.name}.{name}.{attribute}")
    assert missing == []


def test_the_stop_names_the_requests_it_cuts_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from wsgi_covguard.guard import Guard
    from wsgi_covguard.session import CoverageSession

    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"))
    session = CoverageSession(cov, owned=True, token=None)
    guard = Guard(session, drain_timeout=0, name_of=lambda request: str(request["name"]))
    slow = {"name": "GET /slow"}
    began = guard.enter(slow)
    assert guard.in_flight() == 1
    with caplog.at_level(logging.INFO, logger="covguard"):
        guard.drain()
        assert caplog.records == [], "not cut yet: the doors end what they can first"
        assert guard.ending, "and are told to"
        guard.drain(at_exit=True)
        guard.drain(at_exit=True)
    assert [r.getMessage() for r in caplog.records] == [
        "cut GET /slow: still running at drain_timeout=0s (its client sees the connection closed)"
    ]
    guard.leave(slow, began)
    assert guard.in_flight() == 0


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "arcs"])
def test_the_saved_line_counts_as_coverage_does(branch: bool, tmp_path: Path) -> None:
    """The log's "saved N lines of M files" (one SQL query) equals coverage.py's own API,
    with contexts (a line run under two counts once) and a file touched but not run."""
    from wsgi_covguard.session import _measured

    path = tmp_path / "data"
    data = coverage.CoverageData(basename=str(path))
    if branch:
        data.add_arcs({"/src/a.py": {(-1, 1), (1, 2), (2, 5), (5, -1)}, "/src/b.py": {(-1, 3)}})
        data.set_context("other")
        data.add_arcs({"/src/a.py": {(1, 7), (7, -1)}})
    else:
        data.add_lines({"/src/a.py": {1, 2, 5}, "/src/b.py": {3}})
        data.set_context("other")
        data.add_lines({"/src/a.py": {1, 7}})
    data.touch_file("/src/c.py")
    data.write()
    lines = {name: data.lines(name) or [] for name in data.measured_files()}
    data.close(force=True)
    count = sum(len(found) for found in lines.values())
    files = sum(1 for found in lines.values() if found)
    assert _measured(str(path)) == f"{count} lines of {files} files to data"
    assert (count, files) == (5, 2)


@pytest.mark.parametrize("stopping", [True, False], ids=["master-stopping", "alone"])
def test_sigterm_in_a_hypercorn_worker_waits_for_its_masters_stop_and_ends_it_otherwise(
    stopping: bool,
) -> None:
    """hypercorn's master sets its workers' event, then terminates the workers still up
    once one has stopped: such a worker goes on with its graceful stop (its lifespan
    shutdown ran in one worker of two, under load, when the handler decided on what its
    watching thread had seen so far). A SIGTERM alone ends the worker."""
    import subprocess

    probe = textwrap.dedent(f"""
        import functools, multiprocessing, os, signal, time
        from wsgi_covguard.servers.hypercorn import _worker_sigterm
        event = multiprocessing.Event()
        if {stopping}:
            event.set()
        signal.signal(signal.SIGTERM, functools.partial(_worker_sigterm, event))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(3)
        print("went on")
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == ((0, "went on") if stopping else (143, ""))


def test_the_shutdown_goes_on_under_a_server_that_never_calls_close() -> None:
    """PEP 3333 says a server calls the body's ``close()``; one that stops reading at
    ``Content-Length`` and never calls it must not hold the stop for ever."""
    import threading

    ran = threading.Event()
    answer = Answer.of(b'{"status": "stopping"}\n', "application/json", 202)
    answer.after = ran.set
    status: list[str] = []
    body = _response(answer)(EnvironBuilder().get_environ(), lambda s, h: status.append(s))
    chunks = iter(body)
    assert next(chunks) == b'{"status": "stopping"}\n'  # Content-Length reached: no more
    assert status == ["202 ACCEPTED"]
    assert not ran.is_set(), "not before the body is handed over"
    assert ran.wait(timeout=10), "the stop began without close()"


def test_a_worker_saved_for_good_takes_a_late_ctrl_c_quietly(tmp_path: Path) -> None:
    """A multiprocessing child joins its threads after its finalizers (our last save): a
    Ctrl-C landing there printed a KeyboardInterrupt traceback (a uvicorn worker, once,
    in the full suite beside two busy loops)."""
    import subprocess

    (tmp_path / "late.py").write_text(
        textwrap.dedent(f"""
        import glob, multiprocessing, os, signal, threading, time

        def child():
            import wsgi_covguard
            wsgi_covguard.start(token="{"t" * 24}")
            threading.Thread(target=time.sleep, args=(2,)).start()  # joined at the very end

        if __name__ == "__main__":
            worker = multiprocessing.get_context("spawn").Process(target=child)
            worker.start()
            deadline = time.monotonic() + 20
            while not glob.glob(".coverage.*") and time.monotonic() < deadline:
                time.sleep(0.02)  # until its last save is written
            time.sleep(0.2)
            os.kill(worker.pid, signal.SIGINT)
            worker.join()
            print("exit", worker.exitcode)
    """)
    )
    done = subprocess.run(
        [sys.executable, "late.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "exit 0", done.stderr
    assert "Traceback" not in done.stderr, done.stderr


#: A shutdown's answer body iterated while the interpreter exits (an atexit handler), where
#: Python 3.12+ starts no thread: a second shutdown answered as the first one's stop ended
#: the process was a 500.
BODY_AT_EXIT = """\
import atexit
from wsgi_covguard.middleware import _BodyThen

def answer():
    body = _BodyThen(b"accepted", lambda: print("the stop's action ran"))
    print(b"".join(body).decode())

atexit.register(answer)
"""


def test_an_answer_whose_action_follows_its_body_is_whole_while_the_process_exits() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BODY_AT_EXIT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the stop's action ran", "accepted"], done.stderr
    assert "Traceback" not in done.stderr
