"""The ``covguard`` command: serve an app under coverage, run a test command around it, stop it.

``covguard serve APP``      serve APP (``module:attr``, ``module:factory()``) with coverage
                            started before APP is imported
``covguard run APP -- CMD`` serve, run CMD against it, stop, combine, report
``covguard shutdown [URL]`` POST the shutdown route and wait until the server is gone
``covguard collect URL...`` download each server's data as a parallel data file here
``covguard report [URL]``   a live server's report (and HTML), from here
``covguard map [DATA...]``  the impact map of coverage data with per-test contexts
``covguard affected``       the end-to-end tests a change can affect, one node id a line

``main(argv=None) -> int`` catches our own errors and prints one line: a wrong
APP, port or server is a user's mistake, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .auth import dashboard_password
from .client import ControlClient, Reply
from .errors import ConfigError, CovGuardError, ExitCode
from .log import say
from .settings import CONTROL_PREFIX, SHUTDOWN_PATH, TOKEN_ENV, URL_ENV, Settings, server_url
from .spawn import serve_argv, spawn

if TYPE_CHECKING:
    import coverage

    from .templates import Rendered

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

    impact_map = commands.add_parser(
        "map", help="write the impact map of coverage data with per-test contexts"
    )
    impact_map.add_argument(
        "data", nargs="*", help="data files, combined as coverage combine does (default:"
        " coverage's data file, .coverage)",
    )  # fmt: skip
    impact_map.add_argument("--output", metavar="FILE", help=_MAP_HELP)
    impact_map.set_defaults(func=_map)

    affected = commands.add_parser(
        "affected",
        help="the end-to-end tests a change can affect, one node id a line (exit 3: run them all)",
    )
    affected.add_argument("--since", metavar="REF", help="default: the impact map's commit")
    affected.add_argument("--map", metavar="FILE", help=_MAP_HELP)
    affected.add_argument(
        "--ignore", action="append", default=[], metavar="PATTERN",
        help="a changed file no end-to-end test can depend on (a glob from the work tree's"
        " root); again for more",
    )  # fmt: skip
    affected.set_defaults(func=_affected)
    return parser


_MAP_HELP = "the impact map (default: .covguard-impact.json beside coverage's data file)"


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
        help="record dynamic contexts (per-test labels): under sysmon on Python 3.12+ with"
        " coverage>=7.18, else ctrace",
    )
    parser.add_argument(
        "--autosave",
        type=float,
        metavar="SECONDS",
        help="also save every SECONDS, so a SIGKILL loses at most that much",
    )


# -- serve ----------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .serving import serve

    return serve(args)


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
        overlaps = _overlaps(server.url, token) if args.contexts else None
        stopped = _stop(server.url, token, server.process)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    reported = _combine_and_report(args.html, args.fail_under, overlaps) if stopped else None
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


def _combine_and_report(
    html: str | None, fail_under: float | None, overlaps: dict[str, Any] | None
) -> bool:
    """Combine every parallel data file, print the report; False if below the bar. With
    ``--contexts`` (``overlaps``: the server's requests across a switch), write the impact
    map, or say that no context came (never silently unlabelled)."""
    import coverage

    from . import impact

    # The templates' notes pair with the parallel files, which combining deletes.
    rendered = impact.templates_of([impact.data_file().parent]) if overlaps is not None else None
    cov = coverage.Coverage()
    try:
        cov.combine()
        cov.save()
        for note in rendered.notes if rendered is not None else ():
            with contextlib.suppress(OSError):  # its data file is combined and gone
                note.unlink()
        if overlaps is not None and not cov.get_data().measured_contexts() - {""}:
            say(
                "--contexts: the command set no context, so every line carries the empty one;"
                " label each test with pytest --covguard-contexts",
                logging.WARNING,
            )
        elif overlaps is not None:
            _write_map(cov, overlaps, rendered)
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


# -- impact ---------------------------------------------------------------------


def _overlaps(url: str, token: str) -> dict[str, Any]:
    """The server's requests that ran across a context switch, before it stops: the tests
    that began them are always run (their later lines went to the next test)."""
    try:
        answer = ControlClient(url, token).get(f"{CONTROL_PREFIX}/status")
        status = json.loads(answer.body) if answer.status == 200 else {}
    except (CovGuardError, ValueError):
        status = {}
    return {"count": status.get("overlap_count", 0), "shown": status.get("overlaps", [])}


def _write_map(cov: coverage.Coverage, overlaps: dict[str, Any], rendered: Rendered | None) -> None:
    from . import impact

    root = impact.work_tree(Path.cwd())
    if root is None:
        say(f"no impact map: {Path.cwd()} is not in a git work tree", logging.WARNING)
        return
    shown = [str(overlap.get("began")) for overlap in overlaps["shown"]]
    distrust = impact.distrust_of(int(overlaps["count"]), len(shown))
    new = impact.record(cov.get_data(), root, unsure=shown, distrust=distrust, rendered=rendered)
    path = impact.default_map()
    print(f"covguard: impact map of {len(impact.save(new, path).tests)} tests in {path}")


def _map(args: argparse.Namespace) -> int:
    from . import impact

    root = impact.work_tree(Path.cwd())
    if root is None:
        raise ConfigError(f"{Path.cwd()} is not in a git work tree: a map needs a commit")
    data = impact.data_file()  # combined already, or the parallel files beside it
    files = [Path(name) for name in args.data] or [data if data.exists() else data.parent]
    path = Path(args.output) if args.output else impact.default_map()
    written = impact.save(impact.record_files(files, root, test_root=Path.cwd()), path)
    print(f"covguard: impact map of {len(written.tests)} tests in {path}")
    return ExitCode.OK


def _affected(args: argparse.Namespace) -> int:
    """The map's tests the change can affect, one a line; exit 3 (and every known test)
    when the whole suite must run: tests not in the map are never listed, so a runner
    also runs those it has and the list lacks."""
    from . import impact

    root = impact.work_tree(Path.cwd())
    try:
        if root is None:
            raise impact.ImpactError(f"{Path.cwd()} is not in a git work tree: no change to read")
        the_map = impact.read(Path(args.map) if args.map else impact.default_map())
        selection = impact.select(the_map, root, args.since, args.ignore)
    except impact.ImpactError as exc:
        say(f"every test runs: {exc}", logging.WARNING)
        return ExitCode.RUN_EVERYTHING
    if selection.everything is not None:
        print("\n".join(sorted(the_map.tests)))
        say(f"every test runs: {selection.everything}", logging.WARNING)
        return ExitCode.RUN_EVERYTHING
    chosen = sorted(test for test in the_map.tests if selection.why(test, True) is not None)
    print("\n".join(chosen))
    commit = (the_map.commit or "no commit")[:12]
    say(f"{len(chosen)} of {len(the_map.tests)} end-to-end tests can be affected by the"
        f" change; {len(the_map.tests) - len(chosen)} not run (map from {commit})")  # fmt: skip
    return ExitCode.OK


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


def _not_ours(url: str, path: str, answer: Reply) -> None:
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
