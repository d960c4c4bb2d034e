"""Cheroot (CherryPy's server): its own ``stop()``, from another thread."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..stopping import CallStop, Stopper, server_on_stack
from .base import Options, Server, ServerSupport

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class CherootSupport(ServerSupport):
    """What wsgi_covguard knows of cheroot."""

    name = "cheroot"
    requires = "cheroot"
    extra = "cheroot"
    serves = "wsgi"

    def launch(self, app: WSGIApplication, host: str, port: int, options: Options) -> Server:
        from cheroot.wsgi import Server as CherootServer

        server = CherootServer((host, port), app, numthreads=options.threads or 10)
        server.prepare()  # binds; start() is prepare() + serve()
        bound_port = int(server.bind_addr[1])
        return Server(self.name, host, bound_port, server.serve, CallStop(server, "stop"))

    def wsgi_stopper(self, environ: Mapping[str, Any]) -> Stopper | None:
        """Its ``HTTPServer``, found on the request thread's stack."""
        module = sys.modules.get("cheroot.server")
        server = None if module is None else server_on_stack(module.HTTPServer)
        return None if server is None else CallStop(server, "stop")
