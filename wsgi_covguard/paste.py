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

Under ``pserve --reload`` the server runs in a worker of hupper's monitor, which starts
another one when the worker ends, unless told to end too. A shutdown asked through the
route tells it, once this worker has saved for good (:func:`~.ending.after_last_save`):
SIGINT to the monitor, checked to be this process's parent still. hupper gives a worker
it stops one second to end: told at the last moment, the worker is gone by then.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import coverage

from . import ending
from .errors import ConfigError
from .log import say
from .messages import ControlRequest
from .middleware import CovGuard
from .startup import get_session, start
from .stopping import Stopper

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
    return _Door(app, **{name: _value(name, raw) for name, raw in options.items()})


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


class _Door(CovGuard):
    """The door, which under ``pserve --reload`` also ends hupper's monitor on a shutdown."""

    def _opened(self, guard: Any) -> None:
        super()._opened(guard)
        _hupper_monitor()  # while it is this process's parent for sure

    @staticmethod
    def _stopper_of(request: ControlRequest) -> Stopper:
        stopper = CovGuard._stopper_of(request)
        monitor = _hupper_monitor()
        return stopper if monitor is None else _MonitorToo(stopper, monitor)


class _MonitorToo(Stopper):
    """``stopper``, and hupper's monitor told to end once this worker saved for good."""

    def __init__(self, stopper: Stopper, monitor: int) -> None:
        self._stopper = stopper
        self.name = f"{stopper.name}, then SIGINT to pserve's reloader ({monitor})"
        self.drains = stopper.drains
        self._monitor = monitor

    def before_drain(self) -> float:
        return self._stopper.before_drain()

    def __call__(self) -> None:
        ending.after_last_save(functools.partial(_end_monitor, self._monitor))
        self._stopper()


@functools.cache
def _hupper_monitor() -> int | None:
    """The pid of the hupper monitor this process serves under, if any: its parent when
    the door opened."""
    hupper = sys.modules.get("hupper")
    if hupper is None or not hupper.is_active():
        return None
    return os.getppid()


def _end_monitor(monitor: int) -> None:
    if os.getppid() != monitor:  # it died, and this process went to another parent
        say(f"pserve's reloader {monitor} is gone; nothing more to stop")
        return
    os.kill(monitor, signal.SIGINT)
