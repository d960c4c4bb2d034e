"""Launching each server for ``covguard serve``: bind, run until stopped, stop.

Each launcher binds the socket first (so ``--port 0`` has a real port to report
and a busy port fails at start-up), then returns a :class:`Server` whose
``run()`` blocks until the server stops and whose ``stop`` is the server's own
clean way out, called from another thread (see :mod:`.stopping`).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .prefork import PREFORK
from .stopping import (
    CallStop,
    EndServeLoop,
    InterruptMain,
    SetShouldExit,
    Stopper,
    TerminateMaster,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["ASGI_SERVERS", "SERVERS", "Options", "Server", "check_available", "create_server"]


@dataclass(frozen=True)
class Server:
    """A bound server: where it listens, how to run it, how to stop it."""

    name: str
    host: str
    port: int
    run: Callable[[], object]
    stop: Stopper

    @property
    def url(self) -> str:
        """Where it listens (IPv6 hosts in brackets), with the port it really got."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Options:
    """What the command line says about threads and processes (None: the server's default)."""

    threads: int | None = None
    workers: int | None = None
    #: The app is an ASGI one (for granian, whose workers import it: it cannot look).
    asgi: bool = False


def _waitress(app: WSGIApplication, host: str, port: int, options: Options) -> Server:
    import waitress.server

    server = waitress.server.create_server(app, host=host, port=port, threads=options.threads or 4)
    # waitress's clean way out is KeyboardInterrupt in its loop; close() from
    # another thread hangs.
    bound_port = int(server.effective_port)  # type: ignore[union-attr]
    return Server("waitress", host, bound_port, server.run, InterruptMain())


def _werkzeug(app: WSGIApplication, host: str, port: int, options: Options) -> Server:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=options.threads != 1)
    stop = EndServeLoop(server, in_main_thread=True)
    return Server("werkzeug", host, server.server_port, server.serve_forever, stop)


def _cheroot(app: WSGIApplication, host: str, port: int, options: Options) -> Server:
    from cheroot.wsgi import Server as CherootServer

    server = CherootServer((host, port), app, numthreads=options.threads or 10)
    server.prepare()  # binds; start() is prepare() + serve()
    bound_port = int(server.bind_addr[1])
    return Server("cheroot", host, bound_port, server.serve, CallStop(server, "stop"))


def _wsgiref(app: WSGIApplication, host: str, port: int, options: Options) -> Server:
    from wsgiref.simple_server import make_server

    server = make_server(host, port, app)
    stop = EndServeLoop(server, in_main_thread=True)
    return Server("wsgiref", host, server.server_port, server.serve_forever, stop)


def _gunicorn(app: WSGIApplication, host: str, port: int, options: Options) -> Server:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    # We bind, gunicorn inherits the socket (``fd://``): the port is known now.
    listener = socket.create_server((host, port))
    listener.set_inheritable(True)
    settings = {
        "bind": [f"fd://{listener.fileno()}"],
        "workers": options.workers or 1,
        "threads": options.threads or 1,  # more than 1 makes gunicorn use gthread
    }

    class GracefulArbiter(Arbiter):  # type: ignore[misc]
        """Ctrl-C stops gracefully too: workers finish and save, as on SIGTERM."""

        def handle_int(self) -> None:
            self.handle_term()

    class CovguardApplication(BaseApplication):  # type: ignore[misc]
        # The app is already imported here, in the master, with coverage
        # running: every worker forks with it, as with --preload.
        socket = listener  # kept open: gunicorn only has its file descriptor

        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

        def run(self) -> None:
            GracefulArbiter(self).run()

    return Server("gunicorn", host, listener.getsockname()[1], CovguardApplication().run,
                  TerminateMaster(os.getpid()))  # fmt: skip


def _granian(load: Callable[[], Any], host: str, port: int, options: Options) -> Server:
    from granian import Granian
    from granian.constants import Interfaces

    # granian binds in its own code, one socket per worker on Linux: a busy port is
    # found here, and --port 0 becomes a free port chosen now.
    with socket.create_server((host, port)) as probe:
        port = probe.getsockname()[1]
    # granian logs to stdout; ours is for the ready line alone, like every server's.
    to_stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    handlers = {
        "console": {**to_stderr, "formatter": "generic"},
        "access": {**to_stderr, "formatter": "access"},
    }
    server = Granian(
        "covguard", address=host, port=port,
        interface=Interfaces.ASGI if options.asgi else Interfaces.WSGI,
        workers=options.workers or 1, blocking_threads=options.threads,
        log_dictconfig={"handlers": handlers},
    )  # fmt: skip

    def run() -> None:
        # The target is imported by each worker through ``load``, never here: with
        # fork, lines run in this process before the fork are not the worker's.
        server.serve(target_loader=load, wrap_loader=False)

    return Server("granian", host, port, run, TerminateMaster(os.getpid()))


def _uvicorn(app: Any, host: str, port: int, options: Options) -> Server:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    listener = socket.create_server((host, port))
    # uvicorn logs requests to stdout; ours is for the ready line alone.
    logging_config = {**LOGGING_CONFIG, "handlers": {
        name: {**handler, "stream": "ext://sys.stderr"}
        for name, handler in LOGGING_CONFIG["handlers"].items()
    }}  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_config=logging_config))

    def run() -> None:
        server.run(sockets=[listener])

    return Server("uvicorn", host, listener.getsockname()[1], run, SetShouldExit(server))


def _hypercorn(app: Any, host: str, port: int, options: Options) -> Server:
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    listener = socket.create_server((host, port))
    config = Config()

    def run() -> None:
        config.bind = [f"fd://{listener.fileno()}"]  # held open until hypercorn takes it
        # Without a shutdown trigger, hypercorn's loop handles SIGINT and SIGTERM: its
        # graceful stop (connections finish, the lifespan shutdown runs), then run() returns.
        asyncio.run(serve(app, config))

    return Server("hypercorn", host, listener.getsockname()[1], run,
                  TerminateMaster(os.getpid()))  # fmt: skip


def _daphne(app: Any, host: str, port: int, options: Options) -> Server:
    from daphne.server import Server as Daphne  # type: ignore[import-untyped]

    listener = socket.create_server((host, port))
    port = listener.getsockname()[1]
    if listener.family == socket.AF_INET:
        endpoint = f"fd:fileno={listener.fileno()}"  # daphne adopts the socket bound here
    else:  # its fd endpoint takes IPv4 sockets alone: it binds the port itself
        listener.close()
        endpoint = f"tcp6:port={port}:interface={host.replace(':', chr(92) + ':')}"

    def run() -> None:
        # Twisted's asyncio reactor; its SIGINT handler stops it, between two requests.
        Daphne(application=app, endpoints=[endpoint]).run()
        listener.close()

    return Server("daphne", host, port, run, InterruptMain())


_Launcher = Callable[[Any, str, int, Options], Server]

#: name -> (launcher, module it needs, extra that installs it)
SERVERS: dict[str, tuple[_Launcher, str, str | None]] = {
    "waitress": (_waitress, "waitress", None),
    "werkzeug": (_werkzeug, "werkzeug", None),
    "cheroot": (_cheroot, "cheroot", "cheroot"),
    "wsgiref": (_wsgiref, "wsgiref", None),
    "gunicorn": (_gunicorn, "gunicorn", "gunicorn"),
    "granian": (_granian, "granian", "granian"),
    "uvicorn": (_uvicorn, "uvicorn", "uvicorn"),
    "hypercorn": (_hypercorn, "hypercorn", "hypercorn"),
    "daphne": (_daphne, "daphne", "daphne"),
}

#: Servers of ASGI applications; granian serves both kinds, the others WSGI ones.
ASGI_SERVERS = frozenset({"uvicorn", "hypercorn", "daphne"})


def check_available(name: str, options: Options = Options()) -> None:
    """Fail now, in one line, for an unknown server, one not installed, or a bad option."""
    if name not in SERVERS:
        raise ConfigError(f"unknown server {name!r}; choose one of {', '.join(SERVERS)}")
    for option, value in (("--threads", options.threads), ("--workers", options.workers)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value} must be 1 or more")
    if options.workers is not None and name not in PREFORK:
        raise ConfigError(
            f"--workers is for {' and '.join(sorted(PREFORK))}; {name} serves from one process"
            " (drop --workers or use --server gunicorn)"
        )
    _, module, extra = SERVERS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the {name} server is not installed; pip install 'wsgi_covguard[{extra or name}]'"
        )


def create_server(
    name: str, app: Any, host: str, port: int, options: Options = Options()
) -> Server:
    """Bind ``name`` on ``host:port`` serving ``app``; a busy port is a ConfigError.

    ``app`` is the WSGI (or, for :data:`ASGI_SERVERS`, ASGI) application, or for
    :data:`~.prefork.LOADS_IN_WORKERS` servers a picklable function that returns it,
    called in each worker process.
    """
    check_available(name, options)
    launcher = SERVERS[name][0]
    try:
        return launcher(app, host, port, options)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; choose another with --port"
                " (--port 0 picks a free one)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
