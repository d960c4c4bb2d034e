"""The app named on the command line: imported, checked, and told WSGI from ASGI.

``covguard serve`` imports APP in its own process; a server whose workers import the
app (``loads_in_workers``) calls :func:`guarded_app` in each worker, by its dotted
name: this module is light on purpose, and imports no server.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["guarded_app", "is_asgi", "load_app", "probe_is_asgi"]


def load_app(spec: str) -> Any:
    """Import ``module:attribute``, ``module:factory()`` or ``module`` (meaning ``module:app``):
    a WSGI or an ASGI application (see :func:`is_asgi`)."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    if not module_name or not attribute.isidentifier():
        raise ConfigError(f"APP {spec!r} is not of the form module:attribute or module:factory()")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import {module_name!r} (no such module); check APP, or run from the"
                " folder that holds it or pass --app-dir"
            ) from None
        raise ConfigError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise ConfigError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    try:
        obj: Any = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"module {module_name!r} has no attribute {attribute!r}; APP is module:attribute"
        ) from None
    if call:
        obj = obj()
    return obj if is_asgi(obj) else _checked_wsgi(obj, spec)


def is_asgi(app: Any) -> bool:
    """True for an ASGI application: an ``async`` callable (a coroutine function, or an
    object whose ``__call__`` is one), as ASGI servers tell them from WSGI ones."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    return inspect.iscoroutinefunction(call) and not inspect.isclass(app)


def _checked_wsgi(obj: Any, spec: str) -> WSGIApplication:
    fix = (
        "APP must name a WSGI callable (environ, start_response)"
        " or an ASGI one (scope, receive, send)"
    )
    if inspect.isclass(obj) or not callable(obj):
        raise ConfigError(
            f"{spec!r} is {type(obj).__name__} {obj!r:.60}, not a WSGI application; {fix}"
        )
    try:
        inspect.signature(obj).bind({}, None)
    except TypeError:
        hint = f"; did you mean {spec}()?" if not spec.endswith("()") else ""
        raise ConfigError(f"{spec!r} does not take (environ, start_response){hint}") from None
    except ValueError:
        pass  # no signature to check (a builtin); trust it
    app: WSGIApplication = obj
    return app


def guarded_app(spec: str, app_dir: str, contexts: bool, autosave: float | None) -> Any:
    """In a worker process: start coverage, import APP, wrap it (what ``serve`` does in one)."""
    from . import CovGuard, CovGuardASGI, start

    start(contexts=contexts, autosave=autosave)  # the token is in the environment
    sys.path.insert(0, app_dir)
    app = load_app(spec)
    if isinstance(app, (CovGuard, CovGuardASGI)):
        return app
    return CovGuardASGI(app) if is_asgi(app) else CovGuard(app)


def probe_is_asgi(spec: str, app_dir: str) -> bool:
    """Whether APP is an ASGI application, asked of a throwaway process.

    The server's workers import the app, each under coverage; imported here, before
    they fork, its import-time lines would run in the master and be lost to them.
    """
    probe = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        " from wsgi_covguard.apps import is_asgi, load_app;"
        " from wsgi_covguard.errors import ConfigError\n"
        "try: print(is_asgi(load_app(sys.argv[1])))\n"
        "except ConfigError as error: sys.exit(error.code)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    done = subprocess.run(
        [sys.executable, "-c", probe, spec, app_dir],
        capture_output=True, text=True, env=environ, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        ours = [line for line in lines if line.startswith("covguard: ")]
        raise ConfigError((ours or lines)[-1].removeprefix("covguard: "))
    return done.stdout.strip().endswith("True")
