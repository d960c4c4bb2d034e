"""uvicorn (ASGI): its own ``should_exit`` flag, as its signal handler sets it."""

from __future__ import annotations

import socket
from typing import Any

from ..stopping import SetShouldExit
from .base import Options, Server, ServerSupport


class UvicornSupport(ServerSupport):
    """What wsgi_covguard knows of uvicorn."""

    name = "uvicorn"
    requires = "uvicorn"
    extra = "uvicorn"
    serves = "asgi"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        import uvicorn
        from uvicorn.config import LOGGING_CONFIG

        listener = socket.create_server((host, port))
        # uvicorn logs requests to stdout; ours is for the ready line alone.
        logging_config = {**LOGGING_CONFIG, "handlers": {
            name: {**handler, "stream": "ext://sys.stderr"}
            for name, handler in LOGGING_CONFIG["handlers"].items()
        }}  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, log_config=logging_config))

        def run() -> None:
            server.run(sockets=[listener])

        return Server(self.name, host, listener.getsockname()[1], run, SetShouldExit(server))
