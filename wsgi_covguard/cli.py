"""The ``covguard`` command: serve an app under coverage, run a test command around it, stop it.

``covguard serve APP``      serve APP (``module:attr``, ``module:factory()``) with coverage
                            started before APP is imported
``covguard run APP -- CMD`` serve, run CMD against it, stop, combine, report
``covguard shutdown [URL]`` POST the shutdown route and wait until the server is gone
``covguard collect URL...`` download each server's data as a parallel data file here
``covguard report [URL]``   a live server's report (and HTML), from here

``main(argv=None) -> int`` catches our own errors and prints one line: a wrong
APP, port or server is a user's mistake, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import inspect
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import ending
from .auth import dashboard_password
from .client import Answer, ControlClient
from .errors import ConfigError, CovGuardError, ExitCode
from .log import say
from .settings import CONTROL_PREFIX, SHUTDOWN_PATH, TOKEN_ENV, URL_ENV, Settings, server_url
from .spawn import serve_argv, spawn
from .threads import start_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is `covguard run`'s COMMAND, options included.
    command: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, command = arguments[:split], arguments[split + 1 :]
    args = parser.parse_args(arguments)
    args.command = command
    try:
        return int(args.func(args))
    except CovGuardError as exc:
        say(str(exc), logging.ERROR)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covguard", description="The coverage of a live WSGI server."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a WSGI app with coverage measuring")
    _add_serve_options(serve)
    serve.set_defaults(func=_serve)

    run = commands.add_parser(
        "run",
        help="serve APP, run COMMAND against it, stop it, report",
        usage="covguard run APP [serve options] [--html DIR] [--fail-under PCT]"
        " -- COMMAND [ARGS...]",
    )
    _add_serve_options(run)
    run.set_defaults(port=0)
    run.add_argument("--html", metavar="DIR", help="also write an HTML report to DIR")
    run.add_argument(
        "--fail-under", type=float, metavar="PCT", help="exit 2 if the total is below PCT"
    )
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the server may take to listen (default: %(default)s)",
    )
    run.set_defaults(func=_run)

    shutdown = commands.add_parser("shutdown", help="stop a server through its shutdown route")
    shutdown.add_argument("url", nargs="?", help="the server's URL (default: $COVGUARD_URL)")
    _add_token_options(shutdown)
    shutdown.add_argument("--path", default=SHUTDOWN_PATH, help="default: %(default)s")
    shutdown.add_argument("--timeout", type=float, default=30.0, help="default: %(default)ss")
    shutdown.set_defaults(func=_shutdown)

    collect = commands.add_parser(
        "collect", help="download each server's coverage data as a parallel data file here"
    )
    collect.add_argument("urls", nargs="+", metavar="URL", help="the servers' URLs")
    _add_token_options(collect)
    collect.add_argument("--prefix", default=CONTROL_PREFIX, help="default: %(default)s")
    collect.set_defaults(func=_collect)

    dashboard = commands.add_parser(
        "dashboard", help="the live dashboard's address and its read-only password"
    )
    dashboard.add_argument("url", nargs="?", help="the server's URL (default: $COVGUARD_URL)")
    _add_token_options(dashboard)
    dashboard.add_argument("--prefix", default=CONTROL_PREFIX, help="default: %(default)s")
    dashboard.set_defaults(func=_dashboard)

    report = commands.add_parser("report", help="a live server's coverage report, from here")
    report.add_argument("url", nargs="?", help="the server's URL (default: $COVGUARD_URL)")
    _add_token_options(report)
    report.add_argument("--prefix", default=CONTROL_PREFIX, help="default: %(default)s")
    report.add_argument("--html", metavar="DIR", help="also write coverage.py's HTML report to DIR")
    report.add_argument("--open", action="store_true", help="open the HTML report in a browser")
    report.set_defaults(func=_report_command)
    return parser


def _add_token_options(parser: argparse.ArgumentParser) -> None:
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the control token from FILE, or from standard input with - (default:"
        " $COVGUARD_TOKEN)",
    )
    tokens.add_argument(
        "--token", help="the control token itself: every local user sees it in the process list"
    )


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    from .servers import DEFAULT_ASGI, DEFAULT_WSGI, SERVERS, SERVERS_WITH_WORKERS

    parser.add_argument("app", metavar="APP", help="module:attribute, module:factory() or module")
    parser.add_argument(
        "--server",
        help=f"{' | '.join(SERVERS)} (default: {DEFAULT_WSGI} for a WSGI app,"
        f" {DEFAULT_ASGI} for an ASGI one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=int, help="threads per process (default: the server's own)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help=f"worker processes, {' and '.join(SERVERS_WITH_WORKERS)} (default: 1)",
    )
    parser.add_argument(
        "--app-dir", default=".", help="folder to import APP from (default: the current one)"
    )
    parser.add_argument(
        "--contexts",
        action="store_true",
        help="use a core that records dynamic contexts (per-test labels)",
    )
    parser.add_argument(
        "--autosave",
        type=float,
        metavar="SECONDS",
        help="also save every SECONDS, so a SIGKILL loses at most that much",
    )


# -- serve ----------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from . import CovGuard, CovGuardASGI, start
    from .servers import (
        ASGI_SERVERS,
        DEFAULT_ASGI,
        DEFAULT_WSGI,
        WSGI_SERVERS,
        Options,
        check_available,
        create_server,
        family,
    )

    options = Options(threads=args.threads, workers=args.workers)
    if args.server is not None:
        check_available(args.server, options)
    settings = Settings.read()
    token = settings.token.reveal() if settings.token else _generated_token()
    if args.server is not None and family(args.server).loads_in_workers:
        return _serve_from_workers(args, options)
    session = start(token=token, contexts=args.contexts, autosave=args.autosave)
    assert session is not None
    try:
        sys.path.insert(0, os.path.abspath(args.app_dir))
        app = load_app(args.app)
        asgi = is_asgi(app)
        name = args.server or (DEFAULT_ASGI if asgi else DEFAULT_WSGI)
        kind, able = ("an ASGI", ASGI_SERVERS) if asgi else ("a WSGI", WSGI_SERVERS)
        if name not in able:
            raise ConfigError(
                f"{args.app!r} is {kind} application;"
                f" serve it with --server {', '.join(able[:-1])} or {able[-1]}"
            )
        # Bind before the guard announces that it measures: a busy port is one line.
        front: _AppSlot | _ASGISlot = _ASGISlot() if asgi else _AppSlot()
        server = create_server(name, front, args.host, args.port, options)
        if isinstance(app, (CovGuard, CovGuardASGI)):
            guard: CovGuard | CovGuardASGI = app
        else:
            guard = CovGuardASGI(app, token=token) if asgi else CovGuard(app, token=token)
        front.app = guard
    except CovGuardError:
        session.discard()  # a failed start has nothing worth saving
        raise

    def _graceful(signum: int, frame: FrameType | None) -> None:  # unless the server has one
        guard.begin_shutdown(server.stop)

    ending.handle(signal.SIGTERM, _graceful)
    ready = (
        f"covguard: serving {args.app} on {server.url} ({server.name}, core {session.core},"
        f" pid {os.getpid()})"
    )
    if family(name).binds_when_run:
        _announce_when_listening(server, ready)
    else:
        print(ready, flush=True)
    # Ctrl-C, or our own stop, for servers whose loop does not catch it.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return ExitCode.OK if session.finish() is None else ExitCode.NOT_SAVED


def _serve_from_workers(args: argparse.Namespace, options: Any) -> int:
    """Serve with a server whose worker processes import the app (``loads_in_workers``).

    This process only supervises: each worker starts coverage, imports APP and
    wraps it (:func:`guarded_app`); the shutdown route stops this process's
    server, which stops each worker gracefully, and each saves its own data.
    """
    from .servers import create_server

    app_dir = os.path.abspath(args.app_dir)
    load = functools.partial(guarded_app, args.app, app_dir, args.contexts, args.autosave)
    options = dataclasses.replace(options, asgi=_probe_is_asgi(args.app, app_dir))
    server = create_server(args.server, load, args.host, args.port, options)
    _announce_when_listening(
        server,
        f"covguard: serving {args.app} on {server.url} ({server.name},"
        f" {options.workers or 1} worker(s), pid {os.getpid()})",
    )
    server.run()
    return ExitCode.OK


def _announce_when_listening(server: Any, line: str) -> None:
    """Print the ready ``line`` from a thread once ``server`` accepts connections: a server
    that binds when it runs, or whose workers do, listens only after ``run()`` began."""
    # The workers are forked while the thread below knocks. A fork copies any lock
    # that thread holds, held for ever in the child: resolving the address imports
    # the idna codec (a module lock a worker's first `str.encode("idna")` then waits
    # on). So the address is resolved here, and the thread only connects.
    resolved = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
    family, _, _, _, address = resolved[0]

    def announce() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _accepts(family, address):
                print(line, flush=True)
                return
            time.sleep(0.05)

    start_thread(announce, name="covguard-announce")


def guarded_app(spec: str, app_dir: str, contexts: bool, autosave: float | None) -> Any:
    """In a worker process: start coverage, import APP, wrap it (what ``serve`` does in one)."""
    from . import CovGuard, CovGuardASGI, start

    start(contexts=contexts, autosave=autosave)  # the token is in the environment
    sys.path.insert(0, app_dir)
    app = load_app(spec)
    if isinstance(app, (CovGuard, CovGuardASGI)):
        return app
    return CovGuardASGI(app) if is_asgi(app) else CovGuard(app)


def _probe_is_asgi(spec: str, app_dir: str) -> bool:
    """Whether APP is an ASGI application, asked of a throwaway process.

    The server's workers import the app, each under coverage; imported here, before
    they fork, its import-time lines would run in the master and be lost to them.
    """
    probe = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        " from wsgi_covguard.cli import is_asgi, load_app;"
        " from wsgi_covguard.errors import ConfigError\n"
        "try: print(is_asgi(load_app(sys.argv[1])))\n"
        "except ConfigError as error: sys.exit(error.code)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    done = subprocess.run(
        [sys.executable, "-c", probe, spec, app_dir],
        capture_output=True, text=True, env=environ, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        ours = [line for line in lines if line.startswith("covguard: ")]
        raise ConfigError((ours or lines)[-1].removeprefix("covguard: "))
    return done.stdout.strip().endswith("True")


class _AppSlot:
    """The WSGI application the server is bound with, set once the guard exists."""

    app: Any

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class _ASGISlot:
    """The ASGI application the server is bound with, set once the guard exists."""

    app: Any

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _generated_token() -> str:
    """A fresh token, in a file only this user can read (mkstemp makes it 0600), removed at exit."""
    token = secrets.token_urlsafe(24)
    fd, path = tempfile.mkstemp(prefix="covguard-token-")
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    ending.remove_at_exit(functools.partial(Path(path).unlink, missing_ok=True))
    os.environ[TOKEN_ENV] = token
    say(f"{TOKEN_ENV} was not set; the token is in {path}")
    return token


def load_app(spec: str) -> Any:
    """Import ``module:attribute``, ``module:factory()`` or ``module`` (meaning ``module:app``):
    a WSGI or an ASGI application (see :func:`is_asgi`)."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    if not module_name or not attribute.isidentifier():
        raise ConfigError(f"APP {spec!r} is not of the form module:attribute or module:factory()")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import {module_name!r} (no such module); check APP, or run from the"
                " folder that holds it or pass --app-dir"
            ) from None
        raise ConfigError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise ConfigError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    try:
        obj: Any = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"module {module_name!r} has no attribute {attribute!r}; APP is module:attribute"
        ) from None
    if call:
        obj = obj()
    return obj if is_asgi(obj) else _checked_wsgi(obj, spec)


def is_asgi(app: Any) -> bool:
    """True for an ASGI application: an ``async`` callable (a coroutine function, or an
    object whose ``__call__`` is one), as ASGI servers tell them from WSGI ones."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    return inspect.iscoroutinefunction(call) and not inspect.isclass(app)


def _checked_wsgi(obj: Any, spec: str) -> WSGIApplication:
    fix = (
        "APP must name a WSGI callable (environ, start_response)"
        " or an ASGI one (scope, receive, send)"
    )
    if inspect.isclass(obj) or not callable(obj):
        raise ConfigError(
            f"{spec!r} is {type(obj).__name__} {obj!r:.60}, not a WSGI application; {fix}"
        )
    try:
        inspect.signature(obj).bind({}, None)
    except TypeError:
        hint = f"; did you mean {spec}()?" if not spec.endswith("()") else ""
        raise ConfigError(f"{spec!r} does not take (environ, start_response){hint}") from None
    except ValueError:
        pass  # no signature to check (a builtin); trust it
    app: WSGIApplication = obj
    return app


# -- run ------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    command: list[str] = args.command
    if not command:
        raise ConfigError(
            "no COMMAND to run; write it after --, e.g. covguard run app:app -- pytest"
        )
    from .servers import Options, check_available

    if args.server is not None:
        check_available(args.server, Options(threads=args.threads, workers=args.workers))
    token = secrets.token_urlsafe(24)
    argv = serve_argv(
        args.app, server=args.server, host=args.host, port=args.port, app_dir=args.app_dir,
        threads=args.threads, workers=args.workers, contexts=args.contexts,
        autosave=args.autosave,
    )  # fmt: skip
    server = spawn(argv, token=token, timeout=args.ready_timeout)
    try:
        env = {**os.environ, TOKEN_ENV: token, URL_ENV: server.url}
        status = subprocess.call(command, env=env)
        stopped = _stop(server.url, token, server.process)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    reported = _combine_and_report(args.html, args.fail_under, args.contexts) if stopped else None
    if status != 0:
        return status
    if not stopped:
        say(f"the server did not stop cleanly (exit {server.process.returncode})", logging.ERROR)
        return ExitCode.ERROR
    return ExitCode.OK if reported else ExitCode.ERROR


def _stop(url: str, token: str, server: subprocess.Popen[str]) -> bool:
    try:
        _post_shutdown(url, token, SHUTDOWN_PATH)
    except CovGuardError as exc:
        say(str(exc), logging.ERROR)
        return False
    try:
        return server.wait(timeout=60) == ExitCode.OK
    except subprocess.TimeoutExpired:
        return False


def _combine_and_report(html: str | None, fail_under: float | None, contexts: bool) -> bool:
    """Combine every parallel data file, print the report; False if below the bar. Says so
    if ``--contexts`` was asked and no context came (never silently unlabelled)."""
    import coverage

    cov = coverage.Coverage()
    try:
        cov.combine()
        cov.save()
        if contexts and not cov.get_data().measured_contexts() - {""}:
            say(
                "--contexts: the command set no context, so every line carries the empty one;"
                " label each test with pytest --covguard-contexts",
                logging.WARNING,
            )
        total = cov.report(show_missing=True)
        if html:
            cov.html_report(directory=html)
            print(f"covguard: HTML report in {os.path.join(html, 'index.html')}")
    except coverage.CoverageException as exc:
        say(f"no report: {exc}", logging.ERROR)
        return False
    bar = fail_under if fail_under is not None else float(cov.get_option("report:fail_under") or 0)  # type: ignore[arg-type]
    if total < bar:
        say(f"total coverage {total:.2f}% is below --fail-under {bar:g}%", logging.ERROR)
        return False
    return True


# -- shutdown -------------------------------------------------------------------


def _shutdown(args: argparse.Namespace) -> int:
    url = _url(args)
    _post_shutdown(url, _token(args), args.path)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _listening(url):
            print(f"covguard: {url} has stopped")
            return ExitCode.OK
        time.sleep(0.1)
    say(f"{url} still answers after {args.timeout:g}s", logging.ERROR)
    return ExitCode.FAIL


# -- collect --------------------------------------------------------------------


def _collect(args: argparse.Namespace) -> int:
    token = _token(args)
    failures = 0
    for url in args.urls:
        # Named after the server, beside the configured data file: `coverage
        # combine` (with the user's [paths] remapping) picks it up.
        target = f"{_data_file()}.{_host_slug(url)}.collected"
        try:
            _fetch_data(url, token, args.prefix, target)
        except CovGuardError as exc:
            say(str(exc), logging.ERROR)
            failures += 1
            continue
        print(f"covguard: {url} -> {target}")
    return ExitCode.FAIL if failures else ExitCode.OK


def _fetch_data(url: str, token: str, prefix: str, target: str) -> None:
    """Write the server's coverage data to ``target``, once it is known to be coverage data."""
    import coverage

    answer = ControlClient(url, token, timeout=60).get(prefix + "/data")
    if answer.status != 200:
        _not_ours(url, prefix + "/data", answer)
        raise CovGuardError(f"{url} answered {answer.status}; check the token and URL")
    folder = os.path.dirname(os.path.abspath(target))
    fd, candidate = tempfile.mkstemp(prefix=".covguard-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(answer.body)
        data = coverage.CoverageData(basename=candidate)
        try:
            data.read()
            data.measured_files()
        except (coverage.CoverageException, sqlite3.Error):
            raise CovGuardError(
                f"{url} sent something that is not coverage data; is it a covguard server?"
            ) from None
        finally:
            data.close(force=True)
        os.replace(candidate, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(candidate)


def _url(args: argparse.Namespace) -> str:
    url = server_url(args.url)
    if not url:
        raise ConfigError(f"no server URL; pass it or set {URL_ENV}")
    return url


def _token(args: argparse.Namespace) -> str:
    """The token from --token-file (``-``: standard input), --token (with a warning), or
    ``COVGUARD_TOKEN``."""
    if args.token_file == "-":  # noqa: S105 (standard input, not a password)
        token: str | None = sys.stdin.readline().strip()
    elif args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.readline().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --token-file {args.token_file!r} ({exc.strerror or exc})"
            ) from None
    elif args.token:
        say(
            "--token shows the token to every user of this machine (the process list);"
            " use COVGUARD_TOKEN or --token-file instead",
            logging.WARNING,
        )
        token = args.token
    else:
        found = Settings.read().token
        token = found.reveal() if found else None
    if not token:
        raise ConfigError("no token; set COVGUARD_TOKEN or pass --token-file FILE")
    return token


# -- report ---------------------------------------------------------------------


def _dashboard(args: argparse.Namespace) -> int:
    """Print where the dashboard is and its password: derived from the token, read-only
    (a browser sends it by itself to the app's paths under the prefix too)."""
    print(f"{_url(args)}{args.prefix}/")
    print(f"user: any; password: {dashboard_password(_token(args))} (read-only)")
    return ExitCode.OK


def _report_command(args: argparse.Namespace) -> int:
    import coverage

    url = _url(args)
    with tempfile.TemporaryDirectory(prefix="covguard-report-") as folder:
        data_file = os.path.join(folder, "server")
        _fetch_data(url, _token(args), args.prefix, data_file)
        cov = coverage.Coverage(data_file=data_file)
        cov.load()
        try:
            cov.report(show_missing=True)
            if args.html or args.open:
                directory = args.html or os.path.join(tempfile.mkdtemp(prefix="covguard-"), "html")
                cov.html_report(directory=directory)
                index = os.path.abspath(os.path.join(directory, "index.html"))
                print(f"covguard: HTML report in {index}")
                if args.open:
                    import webbrowser

                    webbrowser.open(f"file://{index}")
        except coverage.CoverageException as exc:
            raise CovGuardError(f"no report: {exc}") from None
    return ExitCode.OK


def _data_file() -> str:
    import coverage

    return str(coverage.Coverage().get_option("run:data_file"))


def _host_slug(url: str) -> str:
    netloc = urllib.parse.urlsplit(url).netloc or url
    return re.sub(r"[^A-Za-z0-9_-]", "_", netloc)


def _post_shutdown(url: str, token: str, path: str) -> None:
    answer = ControlClient(url, token, timeout=10).post(path)
    if answer.status != 202:
        _not_ours(url, path, answer)
        raise CovGuardError(f"{url}{path} answered {answer.status}, not 202; check the token")


def _not_ours(url: str, path: str, answer: Answer) -> None:
    """Raise, saying so, if ``answer`` did not come from a covguard route: every control
    answer is JSON, and a route there never answers 404 nor 405 (the app's do)."""
    if answer.status in (404, 405) or answer.content_type != "application/json":
        raise CovGuardError(
            f"no covguard route at {url}{path} (it answered {answer.status}): was the server"
            " started with COVGUARD_TOKEN?"
        )


def _listening(url: str) -> bool:
    """True while something accepts connections at ``url``.

    A bare connection, closed at once: no request reaches the app, whose
    coverage would otherwise hold lines that no test ran.
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=2).close()
    except OSError:
        return False
    return True


def _accepts(family: socket.AddressFamily, address: Any) -> bool:
    """:func:`_listening` for an address already resolved: no lookup, no import."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as knock:
            knock.settimeout(2)
            return knock.connect_ex(address) == 0
    except OSError:
        return False
