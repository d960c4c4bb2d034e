"""PasteDeploy and ``pserve``: measuring an app whose WSGI pipeline is written in an ini file.

Two pieces, both named in the user's own files and commands, nothing in the app:

- the **filter** ``[filter:covguard] use = egg:wsgi_covguard`` (a
  ``paste.filter_app_factory``): the door (:class:`~.CovGuard`) in front of the rest
  of the pipeline, its options in the ini file (the token never: it is a secret, read
  from ``COVGUARD_TOKEN`` alone);
- the **loader** ``covguard+ini:`` (a ``plaster.loader_factory``, the way ``pserve``
  and Pyramid's scripts read a config URI): ``pserve covguard+ini:development.ini``
  starts coverage before PasteDeploy imports the app. PasteDeploy builds a pipeline's
  app before its filters, so a filter alone starts coverage after the app's module
  bodies ran: their ``def``, ``class`` and decorator lines would be missing. A filter
  that comes too late says so in one line.

Under ``pserve --reload`` the stop ends hupper's monitor too (:mod:`.reloaders`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import coverage

from .errors import ConfigError
from .log import say
from .middleware import CovGuard
from .startup import get_session, start

__all__ = ["filter_factory", "loader"]

#: The ini file's keys for the filter, and what each sets of :class:`~.CovGuard`.
OPTIONS = {"shutdown_path": str, "control_prefix": str, "drain_timeout": float}


def filter_factory(app: Any, global_conf: Mapping[str, str], **options: str) -> CovGuard:
    """``[filter:covguard] use = egg:wsgi_covguard``: ``app`` behind the door, measured.

    ``options`` are the filter section's own keys (:data:`OPTIONS`); a misspelt or
    unknown one, or a token, stops the start in one line.
    """
    if "token" in options:
        raise ConfigError(
            "[filter:covguard] has a token: an ini file is shared, committed and logged;"
            " remove it there and set COVGUARD_TOKEN in the server's environment"
        )
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"[filter:covguard] does not know {', '.join(map(repr, unknown))}; its"
            f" options are {', '.join(OPTIONS)} (the token: COVGUARD_TOKEN)"
        )
    early = get_session() is not None or coverage.Coverage.current() is not None
    if start() is not None and not early:
        say(
            "coverage started in the ini file's filter, after PasteDeploy imported the"
            " app: the lines its modules ran at import (def, class, decorators) are not"
            " measured; serve it with `pserve covguard+ini:FILE.ini` instead",
            logging.WARNING,
        )
    return CovGuard(app, **{name: _value(name, raw) for name, raw in options.items()})


def loader(uri: Any) -> Any:
    """``covguard+ini:FILE.ini``: PasteDeploy's own loader (plaster-pastedeploy), whose
    ``get_wsgi_app`` starts coverage first."""
    try:
        from plaster_pastedeploy import Loader
    except ImportError:
        raise ConfigError(
            f"{uri} needs plaster-pastedeploy (Pyramid's own ini loader):"
            " pip install 'wsgi_covguard[paste]'"
        ) from None

    class MeasuringLoader(Loader):  # type: ignore[misc]
        def get_wsgi_app(self, name: str | None = None, defaults: Any = None) -> Any:
            start()
            return super().get_wsgi_app(name, defaults)

    return MeasuringLoader(uri)


def _value(name: str, raw: str) -> Any:
    try:
        return OPTIONS[name](raw)
    except ValueError:
        raise ConfigError(
            f"[filter:covguard] {name} = {raw!r} is not a number of seconds (e.g. 10)"
        ) from None
