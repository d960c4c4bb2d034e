"""werkzeug's development server (socketserver): ``shutdown()`` from another thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..stopping import EndServeLoop
from .base import Options, Server, ServerSupport

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class WerkzeugSupport(ServerSupport):
    """What wsgi_covguard knows of werkzeug."""

    name = "werkzeug"
    requires = "werkzeug"
    serves = "wsgi"

    def launch(self, app: WSGIApplication, host: str, port: int, options: Options) -> Server:
        from werkzeug.serving import make_server

        server = make_server(host, port, app, threaded=options.threads != 1)
        stop = EndServeLoop(server, in_main_thread=True)
        return Server(self.name, host, server.server_port, server.serve_forever, stop)
