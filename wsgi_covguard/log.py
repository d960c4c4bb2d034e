"""The ``covguard`` logger: every message wsgi_covguard writes about itself.

One line each, ``covguard: <message>`` on standard error, as werkzeug does for its
``werkzeug`` logger: a handler of ours is added only when nothing would show the
message otherwise, so an application that configures logging routes, formats or
silences these with the rest (``logging.getLogger("covguard")``). The ``covguard``
command's own output (the ready line, reports) is not logging: it is printed.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "say"]

logger = logging.getLogger("covguard")

_ready = False


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test's capture, a redirected one),
    unless a handler the application added since shows the record already: an app
    that configures logging after start-up (``logging.basicConfig()`` in its factory)
    would otherwise print every message of ours twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if _would_show(record.levelno, besides=self):
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging's own rule: never raise from a handler
            self.handleError(record)


def _would_show(level: int, besides: logging.Handler | None = None) -> bool:
    """True if some handler on the way up (``besides`` that one) would show a record of
    ``level``."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(h.level <= level for h in current.handlers if h is not besides):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False


def say(message: str, level: int = logging.INFO) -> None:
    """Log ``message`` at ``level`` (one line; the prefix is the handler's)."""
    global _ready
    if not _ready:
        _ready = True
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if not _would_show(logging.INFO):
            handler = _Stderr()
            handler.setFormatter(logging.Formatter("covguard: %(message)s"))
            logger.addHandler(handler)
    logger.log(level, message)
