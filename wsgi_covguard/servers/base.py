"""What every server module provides, and what its launcher returns.

A server module (``servers/<name>.py``) holds one :class:`ServerSupport`: which
module the server needs and which extra installs it, what kind of application it
serves, whether ``--workers`` applies, and how ``covguard serve`` launches it. The
registry (:mod:`wsgi_covguard.servers`) imports it by its dotted name when that
server is used, as gunicorn loads its worker classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from ..stopping import Stopper

__all__ = ["OpenGuard", "Options", "Server", "ServerSupport"]


class OpenGuard(Protocol):
    """What a server's hooks may use of a door's guard (:class:`~wsgi_covguard.guard.Guard`)."""

    @property
    def session(self) -> Any:
        """The measuring session (:class:`~wsgi_covguard.session.CoverageSession`)."""

    def hurry(self) -> bool:
        """If this process drains, its deadline is now; False if no drain was under way."""

    def drain(self) -> None:
        """Wait for the requests in flight, within the stop's deadline."""


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


class ServerSupport:
    """Everything wsgi_covguard knows of one server family; one subclass per server module.

    The class attributes say what the server needs and serves; :meth:`launch` starts it
    for ``covguard serve``.
    """

    #: The name ``--server`` takes.
    name: ClassVar[str]
    #: The module the server needs (``importlib.util.find_spec`` looks for it).
    requires: ClassVar[str]
    #: The extra of wsgi_covguard that installs it; None: a base dependency.
    extra: ClassVar[str | None] = None
    #: What it serves: WSGI apps, ASGI apps, or either (granian).
    serves: ClassVar[Literal["wsgi", "asgi", "both"]]
    #: ``covguard serve --workers`` applies: it serves from several processes under a master.
    takes_workers: ClassVar[bool] = False
    #: Its workers import the app themselves: :meth:`launch` takes a picklable function
    #: that returns it, called in each worker (with fork, lines run in the master before
    #: the fork are not the worker's).
    loads_in_workers: ClassVar[bool] = False

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        """Bind ``host:port`` (a busy port raises OSError) and return the server, unstarted."""
        raise NotImplementedError

    # -- a process serving under it, however it was started ------------------------------

    def serving_here(self) -> bool:
        """True if this process serves under this server, started by ``covguard serve`` or
        by the server's own command line (False: nothing below is asked of it)."""
        return False

    def opening(self) -> None:
        """A door of this process opens, before its siblings can see it listen."""

    def asgi_opened(self, guard: OpenGuard) -> None:
        """The ASGI door measures (it has a token), in the thread that imported it."""

    def asgi_stopper(self, master: int | None, loop: Any) -> Stopper | None:
        """How the ASGI door stops this server; ``master``: this worker's master, checked
        (None: one process, or its master died); ``loop``: the event loop serving the
        shutdown request. None: the generic choice
        (:func:`~wsgi_covguard.stopping.find_asgi_stopper`, behind
        :class:`~wsgi_covguard.stopping.AcceptNoMore` unless the server drains itself)."""
        return None
