"""hypercorn (ASGI): its event loop's SIGTERM handler is its graceful stop."""

from __future__ import annotations

import os
import socket
from typing import Any

from ..stopping import TerminateMaster
from .base import Options, Server, ServerSupport


class HypercornSupport(ServerSupport):
    """What wsgi_covguard knows of hypercorn."""

    name = "hypercorn"
    requires = "hypercorn"
    extra = "hypercorn"
    serves = "asgi"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        import asyncio

        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        listener = socket.create_server((host, port))
        config = Config()

        def run() -> None:
            config.bind = [f"fd://{listener.fileno()}"]  # held open until hypercorn takes it
            # Without a shutdown trigger, hypercorn's loop handles SIGINT and SIGTERM: its
            # graceful stop (connections finish, the lifespan shutdown runs), then run() returns.
            asyncio.run(serve(app, config))

        return Server(self.name, host, listener.getsockname()[1], run,
                      TerminateMaster(os.getpid()))  # fmt: skip
