"""The standard library's wsgiref (socketserver, one request at a time): ``shutdown()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..stopping import EndServeLoop
from .base import Options, Server, ServerSupport

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class WsgirefSupport(ServerSupport):
    """What wsgi_covguard knows of wsgiref."""

    name = "wsgiref"
    requires = "wsgiref"
    serves = "wsgi"

    def launch(self, app: WSGIApplication, host: str, port: int, options: Options) -> Server:
        from wsgiref.simple_server import make_server

        server = make_server(host, port, app)
        stop = EndServeLoop(server, in_main_thread=True)
        return Server(self.name, host, server.server_port, server.serve_forever, stop)
