"""Daphne (ASGI, on Twisted): its SIGINT handler stops the reactor."""

from __future__ import annotations

import socket
from typing import Any

from ..stopping import InterruptMain
from .base import Options, Server, ServerSupport


class DaphneSupport(ServerSupport):
    """What wsgi_covguard knows of daphne."""

    name = "daphne"
    requires = "daphne"
    extra = "daphne"
    serves = "asgi"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
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

        return Server(self.name, host, port, run, InterruptMain())
