"""Who may use the control routes: the token and the loopback rule.

The token is a shared secret between the server and whoever runs the tests. It
comes from an argument or ``COVGUARD_TOKEN`` (see :mod:`.settings`); it is compared in constant time
(:func:`hmac.compare_digest`) and only ever read from the ``Authorization:
Bearer`` header: never from the query string or a cookie, which end up in logs
and in other origins' requests.

The dashboard's login is not the token: a browser sends Basic credentials by
itself to every path under the one it logged in to, the app's paths under the
control prefix included. So its password is a credential derived from the token
(:func:`dashboard_password`), which opens the read-only pages and nothing else: the
app can never receive what would stop the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress

from werkzeug.datastructures import Authorization

from .errors import ConfigError

__all__ = ["MIN_TOKEN_LENGTH", "Token", "dashboard_password", "is_loopback"]

#: Shorter tokens are refused at start-up: 16 characters of ``secrets``
#: output are far beyond guessing over HTTP.
MIN_TOKEN_LENGTH = 16


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

    def matches_bearer(self, header: str) -> bool:
        """True if the ``Authorization`` header value is ``Bearer <token>``.

        Checked here, not by werkzeug's parser, which reads ``Bearer a=b`` as
        parameters; RFC 7235 allows several spaces after the scheme.
        """
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            # Header values are latin-1 decoded bytes (WSGI, ASGI); get those bytes back.
            given = credentials.strip().encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(given, self._secret)

    def matches_basic(self, credentials: Authorization | None) -> bool:
        """True if ``credentials`` are HTTP Basic ones whose password is the dashboard's
        (:func:`dashboard_password`), never the token itself.

        For read-only pages a person opens in a browser, which asks once and then
        sends them by itself (so never for a route that changes state).
        """
        if credentials is None or credentials.type != "basic":
            return False
        password = (credentials.password or "").encode("utf-8")
        expected = dashboard_password(self._secret.decode("utf-8")).encode("ascii")
        return hmac.compare_digest(password, expected)

    def is_itself(self, credentials: Authorization | None) -> bool:
        """True if ``credentials`` are HTTP Basic ones whose password is the token: a login
        the dashboard refuses, saying which password it takes."""
        if credentials is None or credentials.type != "basic":
            return False
        password = (credentials.password or "").encode("utf-8")
        return hmac.compare_digest(password, self._secret)


def dashboard_password(token: str) -> str:
    """The dashboard's password for ``token``: read-only, and the token cannot be found
    from it (HMAC-SHA256 of a fixed text under the token, 32 characters of base64url).
    Anyone with the token computes it: ``covguard dashboard`` prints it."""
    digest = hmac.new(token.encode("utf-8"), b"wsgi_covguard dashboard, read-only", hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")[:32]


def is_loopback(address: str | None) -> bool:
    """True if the client ``address`` is in 127.0.0.0/8 or ::1 (IPv4-mapped too)."""
    try:
        parsed = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback
