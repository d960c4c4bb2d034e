"""The exceptions wsgi_covguard raises.

One root, :class:`CovGuardError`, so callers can catch everything of ours in one
``except``. Messages quote the bad value and say the fix, in one line.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CovGuardError"]


class CovGuardError(Exception):
    """The root of every exception raised by wsgi_covguard."""


class ConfigError(CovGuardError, SystemExit):
    """A setting that cannot work: a short token, an unwritable data file, ...

    It is also a :class:`SystemExit`, on purpose: raised at start-up from a WSGI
    entry point that nothing catches, the interpreter prints the one-line
    message and exits, instead of burying it under a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"covguard: {message}")
        self.message = message
        # SystemExit.__init__ is not on this MRO path; ``code`` is what the
        # interpreter prints (a string) and turns into exit status 1.
        self.code = str(self)

    def __str__(self) -> str:
        return f"covguard: {self.message}"
