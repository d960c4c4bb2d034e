"""gunicorn: a master (the arbiter) and forked workers; SIGTERM to the master stops them
all gracefully: every worker finishes its requests, exits through ``atexit`` and saves
its own data."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..stopping import Stopper, TerminateMaster, checked_master
from .base import Options, Server, ServerSupport

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class GunicornSupport(ServerSupport):
    """What wsgi_covguard knows of gunicorn."""

    name = "gunicorn"
    requires = "gunicorn"
    extra = "gunicorn"
    serves = "wsgi"
    takes_workers = True

    def launch(self, app: WSGIApplication, host: str, port: int, options: Options) -> Server:
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

        return Server(self.name, host, listener.getsockname()[1], CovguardApplication().run,
                      TerminateMaster(os.getpid()))  # fmt: skip

    def prefork_here(self) -> bool:
        """The arbiter too: ``--preload`` imports the app there, before the fork."""
        return "gunicorn" in sys.modules

    def master_at_open(self) -> int | None:
        """The arbiter's pid, as gunicorn gave it to its worker (and checks in the
        worker's loop); None in the arbiter itself (``--preload``)."""
        worker = _loading_worker()
        return None if worker is None else int(worker.ppid)

    def wsgi_stopper(self, environ: Mapping[str, Any]) -> Stopper | None:
        """SIGTERM to the arbiter: gunicorn's graceful stop, which drains every worker."""
        pid = checked_master() if "gunicorn.socket" in environ else None
        return None if pid is None else TerminateMaster(pid)


def _loading_worker() -> Any | None:
    """The gunicorn worker loading the app on this thread, if any."""
    base = sys.modules.get("gunicorn.workers.base")
    frame = sys._getframe(1)
    while base is not None and frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, base.Worker):
            return owner
        frame = frame.f_back  # type: ignore[assignment]
    return None
