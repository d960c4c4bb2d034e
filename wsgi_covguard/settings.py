"""wsgi_covguard's settings, and the one order they are read in.

Like coverage.py's configuration (defaults, then its file, then the environment,
then the arguments), each setting is taken from the first place that gives it:

1. an argument (of :func:`~wsgi_covguard.start`, :class:`~wsgi_covguard.CovGuard`,
   or the ``covguard`` command), when given (not ``None``);
2. else its environment variable, when set and not empty;
3. else its default.

So an argument can turn off what the environment turns on (``allow_remote=False``
beats ``COVGUARD_ALLOW_REMOTE=1``). A value that cannot work stops the start in
one line naming it and the fix (:class:`~wsgi_covguard.ConfigError`).

========================  ==========================  ================================
setting                   environment                 default
========================  ==========================  ================================
``token``                 ``COVGUARD_TOKEN``          none: the middleware is inert
``allow_remote``          ``COVGUARD_ALLOW_REMOTE``   off (``1`` on, ``0`` off)
``autosave`` (seconds)    ``COVGUARD_AUTOSAVE``       never
``url`` (for clients)     ``COVGUARD_URL``            none
========================  ==========================  ================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .auth import Token
from .errors import ConfigError

__all__ = [
    "ALLOW_REMOTE_ENV", "AUTOSAVE_ENV", "CONTROL_PREFIX", "SHUTDOWN_PATH", "TOKEN_ENV", "URL_ENV",
    "Settings", "server_url",
]  # fmt: skip

TOKEN_ENV = "COVGUARD_TOKEN"  # noqa: S105 (the variable's name, not a secret)
ALLOW_REMOTE_ENV = "COVGUARD_ALLOW_REMOTE"
AUTOSAVE_ENV = "COVGUARD_AUTOSAVE"
URL_ENV = "COVGUARD_URL"

#: Where the routes are unless told otherwise (``shutdown_path``, ``control_prefix``).
SHUTDOWN_PATH = "/__shutdown__"
CONTROL_PREFIX = "/__coverage__"


@dataclass(frozen=True)
class Settings:
    """The settings in force, each from its argument, its variable or its default."""

    token: Token | None = field(default=None, repr=False)
    allow_remote: bool = False
    autosave: float | None = None
    url: str | None = None

    @classmethod
    def read(
        cls,
        *,
        token: str | None = None,
        allow_remote: bool | None = None,
        autosave: float | None = None,
        url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """The settings from these arguments, then ``environ`` (default: ``os.environ``).

        Only the value that wins is checked: a short ``COVGUARD_TOKEN`` does not stop
        a start that was given a good token. Without a token, wsgi_covguard is inert
        and reads nothing else (but ``url``).
        """
        env = os.environ if environ is None else environ
        secret = token if token is not None else env.get(TOKEN_ENV) or None
        url = server_url(url, env)
        if secret is None:  # inert: nothing else is read, so nothing else can fail
            return cls(url=url)
        return cls(
            token=Token(secret),
            allow_remote=allow_remote if allow_remote is not None else _switch(env),
            autosave=_seconds(autosave, env),
            url=url,
        )


def server_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The server a client talks to: ``url`` if given, else ``COVGUARD_URL``, else None."""
    env = os.environ if environ is None else environ
    return url or env.get(URL_ENV) or None


def _switch(env: Mapping[str, str]) -> bool:
    value = env.get(ALLOW_REMOTE_ENV, "")
    if value not in ("", "0", "1"):
        raise ConfigError(
            f"{ALLOW_REMOTE_ENV}={value!r} is neither 1 nor 0; set {ALLOW_REMOTE_ENV}=1 to accept"
            " control requests from other hosts"
        )
    return value == "1"


def _seconds(autosave: float | None, env: Mapping[str, str]) -> float | None:
    if autosave is None:
        setting = env.get(AUTOSAVE_ENV)
        if not setting:
            return None
        try:
            autosave = float(setting)
        except ValueError:
            raise ConfigError(
                f"{AUTOSAVE_ENV}={setting!r} is not a number of seconds; set e.g. {AUTOSAVE_ENV}=5"
            ) from None
    if not autosave > 0:
        raise ConfigError(f"autosave={autosave!r} must be a number of seconds above 0, e.g. 5")
    return autosave
