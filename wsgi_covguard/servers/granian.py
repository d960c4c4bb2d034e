"""granian: a master and worker processes (WSGI or ASGI); SIGTERM to the master stops all."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from ..stopping import TerminateMaster
from .base import Options, Server, ServerSupport


class GranianSupport(ServerSupport):
    """What wsgi_covguard knows of granian."""

    name = "granian"
    requires = "granian"
    extra = "granian"
    serves = "both"
    takes_workers = True
    loads_in_workers = True

    def launch(self, load: Callable[[], Any], host: str, port: int, options: Options) -> Server:
        from granian import Granian
        from granian.constants import Interfaces

        # granian binds in its own code, one socket per worker on Linux: a busy port is
        # found here, and --port 0 becomes a free port chosen now.
        with socket.create_server((host, port)) as probe:
            port = probe.getsockname()[1]
        # granian logs to stdout; ours is for the ready line alone, like every server's.
        to_stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        handlers = {
            "console": {**to_stderr, "formatter": "generic"},
            "access": {**to_stderr, "formatter": "access"},
        }
        server = Granian(
            "covguard", address=host, port=port,
            interface=Interfaces.ASGI if options.asgi else Interfaces.WSGI,
            workers=options.workers or 1, blocking_threads=options.threads,
            log_dictconfig={"handlers": handlers},
        )  # fmt: skip

        def run() -> None:
            # The target is imported by each worker through ``load``, never here: with
            # fork, lines run in this process before the fork are not the worker's.
            server.serve(target_loader=load, wrap_loader=False)

        return Server(self.name, host, port, run, TerminateMaster(os.getpid()))
