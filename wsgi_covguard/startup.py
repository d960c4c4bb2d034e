"""``start()``: coverage.py started (or adopted) before the app is imported, once.

Before a session can measure, its ``Coverage`` must exist, started early: this module
makes it from coverage.py's own configuration, with what wsgi_covguard adds (a
parallel data file per process, its own files omitted, the core chosen, the data
folder checked writable), refuses a server whose data would be partial, and hands it
to a :class:`~.session.CoverageSession`, whose every way out saves
(:func:`~.ending.save_on_every_way_out`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import coverage

from . import covcompat, ending
from .errors import ConfigError
from .log import say
from .servers import refusal_here
from .session import CoverageSession
from .settings import Settings

__all__ = ["choose_core", "get_session", "start"]

#: Our own files are never part of the user's report.
_PACKAGE_DIR = str(Path(__file__).resolve().parent)

_lock = threading.Lock()
_session: CoverageSession | None = None


def get_session() -> CoverageSession | None:
    """The session :func:`start` made in this process, if any."""
    return _session


def start(
    *,
    token: str | None = None,
    core: str | None = None,
    contexts: bool = False,
    autosave: float | None = None,
    **coverage_options: Any,
) -> CoverageSession | None:
    """Start measuring now, before the application is imported.

    Call it at the very top of the WSGI entry point. Idempotent: later calls
    return the same session. Without a token (argument or ``COVGUARD_TOKEN``)
    it does nothing and returns ``None``, so the entry point is safe to deploy.

    :param token: the control token; defaults to ``COVGUARD_TOKEN``.
    :param core: coverage's measuring core (``sysmon``, ``ctrace``,
        ``pytrace``). By default the configured one, else ``sysmon`` on
        Python 3.12+ when the configuration allows it, else ``ctrace``.
    :param contexts: choose a core that can record dynamic contexts.
    :param autosave: save every so many seconds in the background (default:
        ``COVGUARD_AUTOSAVE``, else never), so that a process killed with
        SIGKILL loses at most that much.
    :param coverage_options: passed to :class:`coverage.Coverage` (e.g.
        ``config_file``, ``source``, ``data_file``); ``data_suffix`` is ours.
    """
    global _session
    with _lock:
        if _session is not None:
            return _session
        settings = Settings.read(token=token, autosave=autosave)
        checked = settings.token
        if checked is None:
            return None
        refused = refusal_here()  # better no data than silently partial data
        if refused is not None:
            raise ConfigError(refused)
        every = settings.autosave
        cov = coverage.Coverage.current()
        owned = cov is None
        if cov is None:
            cov = _new_coverage(core=core, contexts=contexts, options=coverage_options)
            cov.start()
        try:
            lacking = covcompat.check(cov)
        except ConfigError:
            if owned:
                cov.stop()
            raise
        # Recorded under sysmon too, our way (covcompat.switch_context): not to be warned of.
        quiet = cov.get_option("run:disable_warnings")
        assert isinstance(quiet, list)
        cov.set_option("run:disable_warnings", [*quiet, "no-sysmon-context"])
        _session = CoverageSession(cov, owned=owned, token=checked)
        _session.contexts_asked = contexts
        if contexts:
            _session.note_templates()
        for line in lacking:
            _session.warnings.append(line)
            say(line, logging.WARNING)
        if owned:
            _session.measure_importing(sys._getframe(1))
        ending.save_on_every_way_out(_session)
        _session.warn_untraced_threads()
        if every is not None:
            _session.autosave(every)
        return _session


def _new_coverage(
    *, core: str | None, contexts: bool, options: dict[str, Any]
) -> coverage.Coverage:
    if "data_suffix" in options:
        raise ConfigError(
            f"data_suffix={options['data_suffix']!r} is set by wsgi_covguard itself"
            " (one parallel data file per process); remove it"
        )
    try:
        cov = coverage.Coverage(data_suffix=True, **options)
    except TypeError as exc:
        raise ConfigError(f"{exc}; see coverage.Coverage() for the options it takes") from None
    except coverage.CoverageException as exc:
        raise ConfigError(f"{exc}; fix the coverage configuration") from None
    omit = cov.get_option("run:omit")
    assert isinstance(omit, list)
    cov.set_option("run:omit", [*omit, os.path.join(_PACKAGE_DIR, "*")])
    if core is not None:
        cov.set_option("run:core", core)
    choose_core(cov, contexts=contexts)
    _check_writable(os.path.abspath(str(cov.get_option("run:data_file"))))
    return cov


def choose_core(cov: coverage.Coverage, *, contexts: bool) -> None:
    """Pick sysmon on 3.12+ unless the configuration needs a tracer that can do more.

    An explicit choice (``core=``, ``[run] core``, ``COVERAGE_CORE``) wins. sysmon
    records no branches before Python 3.14, and dynamic contexts only our way
    (:func:`.covcompat.switch_context`), where this coverage.py allows it and not with
    branches; ctrace records them otherwise, said in one line.
    """
    chosen = cov.get_option("run:core")
    why_not = _why_not_sysmon_contexts(cov) if contexts else None
    if chosen == "sysmon" and why_not is not None:
        raise ConfigError(
            f"core 'sysmon' cannot record dynamic contexts here: {why_not};"
            " drop the contexts option or set core to 'ctrace'"
        )
    if chosen is not None or not _sysmon_fits(cov):
        if contexts and chosen is None:
            cov.set_option("run:core", "ctrace")
        return
    if why_not is not None:
        say(f"contexts: core ctrace, not sysmon: {why_not}")
        cov.set_option("run:core", "ctrace")
        return
    cov.set_option("run:core", "sysmon")


def _sysmon_fits(cov: coverage.Coverage) -> bool:
    """Whether the configuration lets sysmon measure all it asks for."""
    if cov.get_option("run:timid") or sys.version_info < (3, 12):
        return False
    if cov.get_option("run:dynamic_context"):
        return False  # coverage.py's own contexts (test_function): not through our switch
    if cov.get_option("run:branch") and sys.version_info < (3, 14):
        return False
    concurrency = cov.get_option("run:concurrency")
    assert isinstance(concurrency, list)
    return not any(lib in concurrency for lib in ("greenlet", "eventlet", "gevent"))


def _why_not_sysmon_contexts(cov: coverage.Coverage) -> str | None:
    if cov.get_option("run:branch"):
        # Python 3.14's branches under sysmon: each code object's last line would need
        # resetting at a switch, or an arc would cross two contexts. Not done here.
        return "branch coverage with contexts needs ctrace"
    return covcompat.sysmon_contexts()


def _check_writable(data_file: str) -> None:
    """Refuse now a data file location we could not write at shutdown."""
    folder = os.path.dirname(data_file)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write coverage data to {data_file!r} ({exc.strerror or exc});"
            " set COVERAGE_FILE or [run] data_file to a writable location"
        ) from None
