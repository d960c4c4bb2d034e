"""waitress: one process, task threads; its clean stop is SIGINT to the main thread."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..stopping import InterruptMain
from .base import Options, Server, ServerSupport

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class WaitressSupport(ServerSupport):
    """What wsgi_covguard knows of waitress."""

    name = "waitress"
    requires = "waitress"
    serves = "wsgi"

    def launch(self, app: WSGIApplication, host: str, port: int, options: Options) -> Server:
        import waitress.server

        server = waitress.server.create_server(
            app, host=host, port=port, threads=options.threads or 4
        )
        # waitress's clean way out is KeyboardInterrupt in its loop; close() from
        # another thread hangs.
        bound_port = int(server.effective_port)  # type: ignore[union-attr]
        return Server(self.name, host, bound_port, server.run, InterruptMain())

    def client_gone(self) -> type[Exception] | None:
        """``ClientDisconnected``: waitress logs a traceback for any other exception raised
        from a body (its log for this one: "Client disconnected")."""
        return getattr(sys.modules.get("waitress.channel"), "ClientDisconnected", None)
