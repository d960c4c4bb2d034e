"""uWSGI: refused. When it stops, workers with requests in flight are killed without
running ``atexit``: their coverage would be lost, and better no data than partial data."""

from __future__ import annotations

import sys
from typing import Any

from .base import Options, Server, ServerSupport


class UwsgiSupport(ServerSupport):
    """What wsgi_covguard knows of uWSGI: that it must refuse it."""

    name = "uwsgi"
    requires = "uwsgi"
    serves = "wsgi"

    def launch(self, app: Any, host: str, port: int, options: Options) -> Server:
        raise NotImplementedError("uWSGI is refused, never launched")

    def serving_here(self) -> bool:
        return "uwsgi" in sys.modules  # the module uWSGI embeds in its own processes

    def refusal(self) -> str | None:
        if not self.serving_here():
            return None
        return (
            "uWSGI is not supported: when it stops, workers with requests in flight are killed"
            " without running atexit, so their coverage would be lost; measure under gunicorn,"
            " waitress or `covguard serve` instead"
        )
