"""Who may use the control routes: the token and the loopback rule.

The token is a shared secret between the server and whoever runs the tests. It
comes from an argument or ``COVGUARD_TOKEN``; it is compared in constant time
(:func:`hmac.compare_digest`) and only ever read from the ``Authorization:
Bearer`` header: never from the query string or a cookie, which end up in logs
and in other origins' requests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["MIN_TOKEN_LENGTH", "Token", "is_loopback", "resolve_token"]

#: Shorter tokens are refused at start-up: 16 characters of ``secrets``
#: output are far beyond guessing over HTTP.
MIN_TOKEN_LENGTH = 16

TOKEN_ENV = "COVGUARD_TOKEN"  # noqa: S105 (the variable's name, not a secret)


class Token:
    """A validated token that can check a request's credentials.

    The secret is kept as bytes and never appears in ``repr()``.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"the token is {len(secret)} characters long; use at least"
                f" {MIN_TOKEN_LENGTH}, e.g. COVGUARD_TOKEN=$(python -c"
                " 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        self._secret = secret.encode("utf-8")

    def __repr__(self) -> str:
        return "Token(<hidden>)"

    def reveal(self) -> str:
        """The secret itself, for a client that must send it."""
        return self._secret.decode("utf-8")

    def matches_bearer(self, environ: WSGIEnvironment) -> bool:
        """True if the request carries ``Authorization: Bearer <token>``."""
        header: str = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            # WSGI headers are latin-1 decoded bytes; get those bytes back.
            given = credentials.strip().encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(given, self._secret)

    def matches_basic(self, environ: WSGIEnvironment) -> bool:
        """True if the request carries HTTP Basic credentials whose password is the token.

        For read-only pages a person opens in a browser, which asks once and then
        sends them by itself (so never for a route that changes state).
        """
        header: str = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (ValueError, binascii.Error):
            return False
        _, _, password = decoded.partition(b":")
        return hmac.compare_digest(password, self._secret)


def resolve_token(token: str | None) -> Token | None:
    """The token from the argument, else ``COVGUARD_TOKEN``, else ``None``."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    return None if token is None else Token(token)


def is_loopback(environ: WSGIEnvironment) -> bool:
    """True if the client connected from 127.0.0.0/8 or ::1 (IPv4-mapped too)."""
    try:
        address = ipaddress.ip_address(environ.get("REMOTE_ADDR", "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
