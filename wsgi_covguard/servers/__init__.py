"""The servers ``covguard serve`` launches: one module each, found by name.

Each module (``servers/<name>.py``) holds the :class:`~.base.ServerSupport` of its server:
which module it needs and which extra installs it, what kind of app it serves,
whether ``--workers`` applies, and how to launch it. Its launcher binds the socket
first (so ``--port 0`` has a real port to report and a busy port fails at
start-up), then returns a :class:`Server` whose ``run()`` blocks until the server
stops and whose ``stop`` is the server's own clean way out, called from another
thread (see :mod:`..stopping`). A module is imported when its server is asked
for, as gunicorn loads its worker classes from dotted names; it imports its
server only when it launches it.

Adding a server: one module here with its :class:`~.base.ServerSupport`, one line in
:data:`SERVERS`, one extra in ``pyproject.toml``.
"""

from __future__ import annotations

import errno
import functools
import importlib
import importlib.util
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..stopping import Stopper, find_wsgi_stopper
from .base import Options, Server, ServerSupport

__all__ = [
    "ASGI_SERVERS",
    "DEFAULT_ASGI",
    "DEFAULT_WSGI",
    "REFUSED",
    "SERVERS",
    "SERVERS_WITH_WORKERS",
    "WSGI_SERVERS",
    "Options",
    "Server",
    "check_available",
    "clients_gone",
    "create_server",
    "cuts_streams",
    "family",
    "prefork_here",
    "refusal_here",
    "serving_here",
    "wsgi_stopper",
]

#: name -> the class that knows that server, ``module:class`` (``--server`` lists them in
#: this order).
SERVERS: dict[str, str] = {
    "waitress": "waitress:WaitressSupport",
    "werkzeug": "werkzeug:WerkzeugSupport",
    "cheroot": "cheroot:CherootSupport",
    "wsgiref": "wsgiref:WsgirefSupport",
    "gunicorn": "gunicorn:GunicornSupport",
    "granian": "granian:GranianSupport",
    "uvicorn": "uvicorn:UvicornSupport",
    "hypercorn": "hypercorn:HypercornSupport",
    "daphne": "daphne:DaphneSupport",
}

#: Servers that are recognised in order to be refused (:meth:`~.base.ServerSupport.refusal`):
#: ``covguard serve`` does not launch them.
REFUSED: dict[str, str] = {
    "uwsgi": "uwsgi:UwsgiSupport",
}

#: ``covguard serve``'s choice when ``--server`` is not given, by the app's kind.
DEFAULT_WSGI = "waitress"
DEFAULT_ASGI = "uvicorn"


@functools.cache
def family(name: str) -> ServerSupport:
    """What knows server ``name`` (one of :data:`SERVERS` or :data:`REFUSED`), its module
    imported now."""
    module, _, cls = {**SERVERS, **REFUSED}[name].partition(":")
    support: type[ServerSupport] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return support()


@functools.cache
def _families() -> tuple[ServerSupport, ...]:
    """Every server known, its module imported (once): what the questions below ask."""
    return tuple(family(name) for name in (*SERVERS, *REFUSED))


def serving_here() -> ServerSupport | None:
    """The server this process serves under, if one of them says so."""
    return next((server for server in _families() if server.serving_here()), None)


def prefork_here() -> ServerSupport | None:
    """The pre-fork server this process is a worker (or a preloading master) of, if any."""
    return next((server for server in _families() if server.prefork_here()), None)


def refusal_here() -> str | None:
    """Why this process must not be measured, if a server it serves under says so."""
    return next(filter(None, (server.refusal() for server in _families())), None)


def wsgi_stopper(environ: Mapping[str, Any]) -> Stopper:
    """How to stop the WSGI server serving ``environ``; call it from the request's thread."""
    found = (server.wsgi_stopper(environ) for server in _families())
    return next(filter(None, found), None) or find_wsgi_stopper()


def cuts_streams(environ: Mapping[str, Any]) -> bool:
    """False if the server serving ``environ`` must not be raised into from a stream."""
    return all(server.cuts_streams(environ) for server in _families())


def clients_gone() -> tuple[type[Exception], ...]:
    """The servers' own exceptions for a client gone, of the servers imported here."""
    return tuple(filter(None, (server.client_gone() for server in _families())))


def _serving(kind: str) -> tuple[str, ...]:
    return tuple(name for name in SERVERS if family(name).serves in (kind, "both"))


#: Servers of ASGI applications, and of WSGI ones, in the order of :data:`SERVERS`;
#: granian serves both kinds.
ASGI_SERVERS = _serving("asgi")
WSGI_SERVERS = _serving("wsgi")
#: Servers that ``--workers`` applies to.
SERVERS_WITH_WORKERS = tuple(name for name in SERVERS if family(name).takes_workers)


_DEFAULTS = Options()  #: each server's own threads and processes


def check_available(name: str, options: Options = _DEFAULTS) -> None:
    """Fail now, in one line, for an unknown server, one not installed, or a bad option."""
    if name not in SERVERS:  # a refused one too
        raise ConfigError(f"unknown server {name!r}; choose one of {', '.join(SERVERS)}")
    for option, value in (("--threads", options.threads), ("--workers", options.workers)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value} must be 1 or more")
    server = family(name)
    if options.workers is not None and not server.takes_workers:
        able = sorted(SERVERS_WITH_WORKERS)
        raise ConfigError(
            f"--workers is for {' and '.join(able)}; {name} serves from one process"
            f" (drop --workers or use --server {SERVERS_WITH_WORKERS[0]})"
        )
    if importlib.util.find_spec(server.requires) is None:
        raise ConfigError(
            f"the {name} server is not installed;"
            f" pip install 'wsgi_covguard[{server.extra or name}]'"
        )


def create_server(
    name: str, app: Any, host: str, port: int, options: Options = _DEFAULTS
) -> Server:
    """Bind ``name`` on ``host:port`` serving ``app``; a busy port is a ConfigError.

    ``app`` is the WSGI (or, for :data:`ASGI_SERVERS`, ASGI) application, or for a
    server whose workers import it (``loads_in_workers``) a picklable function that
    returns it, called in each worker process.
    """
    check_available(name, options)
    try:
        return family(name).launch(app, host, port, options)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; choose another with --port"
                " (--port 0 picks a free one)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
