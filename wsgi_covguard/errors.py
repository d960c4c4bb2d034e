"""The exceptions wsgi_covguard raises.

One root, :class:`CovGuardError`, so callers can catch everything of ours in one
``except``. Messages quote the bad value and say the fix, in one line, without the
``covguard:`` prefix, which whoever shows them adds (:mod:`.log`).
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigError",
    "CovGuardError",
    "ExitCode",
    "PeerUnreachable",
    "RedirectRefused",
    "SaveError",
]


class ExitCode(enum.IntEnum):
    """The ``covguard`` command's exit statuses (``covguard run`` passes COMMAND's on)."""

    #: Everything worked.
    OK = 0
    #: ``covguard shutdown`` or ``collect``: a server did not stop, or did not answer.
    FAIL = 1
    #: A mistake to fix (an APP, a token, a port), no report, or the total below the bar.
    ERROR = 2
    #: ``covguard affected``: no test may be left out; run the whole suite.
    RUN_EVERYTHING = 3
    #: A measuring process could not save its data at its end (a full disk, a read-only
    #: folder): ``EX_IOERR``, as sysexits.h names it.
    NOT_SAVED = 74
    #: Interrupted (Ctrl-C): 128 + SIGINT, as a shell reports it.
    INTERRUPTED = 130


class CovGuardError(Exception):
    """The root of every exception raised by wsgi_covguard."""


class ConfigError(CovGuardError, SystemExit):
    """A setting that cannot work: a short token, an unwritable data file, ...

    It is also a :class:`SystemExit`, on purpose: raised at start-up from a WSGI
    entry point that nothing catches, the interpreter prints the one-line
    message and exits, instead of burying it under a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # SystemExit.__init__ is not on this MRO path; ``code`` is what the
        # interpreter prints (a string) and turns into exit status 1.
        self.code = f"covguard: {message}"

    def __str__(self) -> str:
        return self.message


class SaveError(CovGuardError, OSError):
    """The coverage data could not be written (a full disk, a read-only folder).

    An :class:`OSError` too: what was saved before stays, and the control routes
    answer 507 Insufficient Storage.
    """


class RedirectRefused(CovGuardError):
    """A server answered with a redirect; the token is not sent after it."""


class PeerUnreachable(CovGuardError):
    """No answer from a server: refused, reset, timed out, or not HTTP."""
