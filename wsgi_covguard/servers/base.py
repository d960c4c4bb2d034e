"""What every server module provides: everything wsgi_covguard knows of one server.

A server module (``servers/<name>.py``) holds one :class:`ServerSupport`: which
module the server needs and which extra installs it, what kind of application it
serves, whether ``--workers`` applies, and how ``covguard serve`` launches it; and,
for a process serving under it however it was started (``covguard serve`` or the
server's own command line), how that process knows (``serving_here``,
``prefork_here``, ``master_at_open``), whether it must be refused, how the doors
stop it (``wsgi_stopper``, ``asgi_stopper``) and its quirks (``opening``,
``asgi_opened``, ``client_gone``, ``cuts_streams``). Every hook has a default that
does nothing special: a server that needs none is served by the generic mechanisms.
The registry (:mod:`wsgi_covguard.servers`) imports a module by its dotted name when
its server is used, as gunicorn loads its worker classes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from ..stopping import Stopper

__all__ = ["OpenGuard", "Options", "Server", "ServerSupport", "SupervisedSupport"]


class OpenGuard(Protocol):
    """What a server's hooks may use of a door's guard (:class:`~wsgi_covguard.guard.Guard`)."""

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
    #: It binds its socket itself once it runs (:meth:`launch` only finds the port free):
    #: ``covguard serve`` says it is ready when the port accepts connections.
    binds_when_run: ClassVar[bool] = False
    #: How its command line is told to run asyncio's event loop, where it can run another
    #: (the control routes need asyncio's).
    asyncio_choice: ClassVar[str | None] = None

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

    def asgi_serving(self) -> None:
        """The server began the ASGI lifespan, in its loop: its own signal handlers are in
        place by now."""

    def ending_early(self) -> None:
        """The guard ends this process at the stop's deadline, its data saved: what the
        server expects first may be waited for here (bounded)."""

    def refusal(self) -> str | None:
        """Why this process must not be measured, if it serves under this server where
        the data would be partial (one line, naming what to use instead); else None."""
        return None

    # -- a pre-fork server: a master and its worker processes -----------------------------

    def prefork_here(self) -> bool:
        """True in a process of this server's pre-fork family, however started: a worker,
        or a master that imports the app before it forks (``--preload``)."""
        return False

    def master_at_open(self) -> int | None:
        """In such a process, when the door opens: its master's pid as the server recorded
        it (never today's parent, which may have adopted an orphan); None in a master,
        whose forked children are the workers."""
        return None

    # -- a request being served ---------------------------------------------------------

    def wsgi_stopper(self, environ: Mapping[str, Any]) -> Stopper | None:
        """How to stop this server, from the request of ``environ``, in its thread (the
        server object can be found on its stack); None: not this server's request, or
        no better way than the generic one
        (:func:`~wsgi_covguard.stopping.find_wsgi_stopper`)."""
        return None

    def client_gone(self) -> type[Exception] | None:
        """The server's own exception for a client gone, which it takes quietly where it
        logs a traceback for any other, if it has one and it is imported."""
        return None

    def cuts_streams(self, environ: Mapping[str, Any]) -> bool:
        """False if this server serves ``environ`` and must not be raised into from a
        streamed body at the stop's deadline (it would log a traceback, and end the body
        as if it were whole): the process's end cuts the stream instead."""
        return True

    def asgi_stopper(self, master: int | None, loop: Any) -> Stopper | None:
        """How the ASGI door stops this server; ``master``: this worker's master, checked
        (None: one process, or its master died); ``loop``: the event loop serving the
        shutdown request. None: the generic choice
        (:func:`~wsgi_covguard.stopping.find_asgi_stopper`, behind
        :class:`~wsgi_covguard.stopping.StopAcceptingFirst` unless the server drains itself)."""
        return None


class SupervisedSupport(ServerSupport):
    """A server whose supervisor starts its workers with multiprocessing (granian, and
    uvicorn and hypercorn with ``--workers`` or ``--reload``)."""

    def prefork_here(self) -> bool:
        """A child running the server's own worker function (not a harness's function
        that runs the server in a child of its own)."""
        mp = sys.modules.get("multiprocessing")
        if mp is None or mp.parent_process() is None:
            return False
        target = getattr(mp.current_process(), "_target", None)
        return (getattr(target, "__module__", None) or "").partition(".")[0] == self.requires

    def master_at_open(self) -> int | None:
        """The parent multiprocessing recorded."""
        import multiprocessing

        parent = multiprocessing.parent_process()
        return parent.pid if parent is not None else None
