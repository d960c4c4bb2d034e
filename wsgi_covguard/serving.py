"""``covguard serve``: coverage first, then the app, then its server, until it stops.

The server is bound before the door announces that it measures (a busy port is one
line at start-up), and the ready line is printed once it accepts connections. A
server whose workers import the app is only supervised here: each worker measures
itself (:func:`~.apps.guarded_app`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import ending
from .apps import guarded_app, is_asgi, load_app, probe_is_asgi
from .errors import ConfigError, CovGuardError, ExitCode
from .log import say
from .settings import TOKEN_ENV, Settings
from .threads import start_thread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """``covguard serve``: coverage started, APP imported and wrapped, the server run until it
    stops; the exit status (74: the data could not be saved)."""
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
        if args.server is not None:
            # An entry point that wraps itself opens its door as it is imported: the server
            # must be there already for the door to see it (a gunicorn master that forks
            # its workers with the app imported, as with --preload).
            importlib.import_module(family(args.server).requires)
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
    options = dataclasses.replace(options, asgi=probe_is_asgi(args.app, app_dir))
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


def _accepts(family: socket.AddressFamily, address: Any) -> bool:
    """Whether ``address``, already resolved, accepts a connection (no lookup, no import:
    see :func:`_announce_when_listening`); a bare connection, closed at once."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as knock:
            knock.settimeout(2)
            return knock.connect_ex(address) == 0
    except OSError:
        return False
