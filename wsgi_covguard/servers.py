"""Launching each server for ``covguard serve``: bind, run until stopped, stop.

Each launcher binds the socket first (so ``--port 0`` has a real port to report
and a busy port fails at start-up), then returns a :class:`Server` whose
``run()`` blocks until the server stops and whose ``stop()`` is the server's
own clean way out, called from another thread (see :mod:`.stopping`).
"""

from __future__ import annotations

import errno
import importlib.util
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["SERVERS", "Server", "create_server"]


@dataclass(frozen=True)
class Server:
    """A bound server: where it listens, how to run it, how to stop it."""

    name: str
    host: str
    port: int
    run: Callable[[], None]
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _interrupt_main() -> None:
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


def _waitress(app: WSGIApplication, host: str, port: int, threads: int) -> Server:
    import waitress.server

    server = waitress.server.create_server(app, host=host, port=port, threads=threads)
    # waitress's clean way out is KeyboardInterrupt in its loop; close() from
    # another thread hangs.
    bound_port = int(server.effective_port)  # type: ignore[union-attr]
    return Server("waitress", host, bound_port, server.run, _interrupt_main)


def _werkzeug(app: WSGIApplication, host: str, port: int, threads: int) -> Server:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=threads > 1)
    return Server("werkzeug", host, server.server_port, server.serve_forever, _interrupt_main)


def _cheroot(app: WSGIApplication, host: str, port: int, threads: int) -> Server:
    from cheroot.wsgi import Server as CherootServer

    server = CherootServer((host, port), app, numthreads=threads)
    server.prepare()  # binds; start() is prepare() + serve()
    bound_port = int(server.bind_addr[1])
    return Server("cheroot", host, bound_port, server.serve, server.stop)


def _wsgiref(app: WSGIApplication, host: str, port: int, threads: int) -> Server:
    from wsgiref.simple_server import make_server

    server = make_server(host, port, app)
    return Server("wsgiref", host, server.server_port, server.serve_forever, server.shutdown)


_Launcher = Callable[["WSGIApplication", str, int, int], Server]

#: name -> (launcher, module it needs, extra that installs it)
SERVERS: dict[str, tuple[_Launcher, str, str | None]] = {
    "waitress": (_waitress, "waitress", None),
    "werkzeug": (_werkzeug, "werkzeug", None),
    "cheroot": (_cheroot, "cheroot", "cheroot"),
    "wsgiref": (_wsgiref, "wsgiref", None),
}


def check_available(name: str) -> None:
    """Fail now, in one line, for an unknown server or one not installed."""
    if name not in SERVERS:
        raise ConfigError(f"unknown server {name!r}; choose one of {', '.join(SERVERS)}")
    _, module, extra = SERVERS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the {name} server is not installed; pip install 'wsgi_covguard[{extra or name}]'"
        )


def create_server(name: str, app: WSGIApplication, host: str, port: int, threads: int) -> Server:
    """Bind ``name`` on ``host:port`` serving ``app``; a busy port is a ConfigError."""
    check_available(name)
    launcher = SERVERS[name][0]
    try:
        return launcher(app, host, port, threads)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; choose another with --port"
                " (--port 0 picks a free one)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
