"""The client of a server's control routes: the only way our commands send the token.

``covguard shutdown``, ``collect``, ``report`` and the pytest plugin talk to a server
through :class:`ControlClient`. The token goes to the server it was given for and
nowhere else: urllib's default opener follows redirects (resending ``Authorization``
to any host, and turning a POST into a GET) and sends requests through the proxy that
``HTTP_PROXY`` names. This client does neither: a redirect is refused in one line
naming where it pointed, and no proxy is used.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, NoReturn

from .errors import PeerUnreachable, RedirectRefused

__all__ = ["ControlClient", "PeerUnreachable", "RedirectRefused", "Reply"]


@dataclass(frozen=True)
class Reply:
    """A control route's answer, whatever its status."""

    status: int
    body: bytes
    content_type: str


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Message, newurl: str,
    ) -> NoReturn:  # fmt: skip
        raise RedirectRefused(
            f"{req.full_url} answered {code}, a redirect to {newurl}; the token is not"
            " sent there. A covguard route never redirects: no covguard route there (was the"
            " server started with COVGUARD_TOKEN?), or use the server's own URL"
        )


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _RefuseRedirects())


class ControlClient:
    """Requests to one server, with ``Authorization: Bearer <token>``.

    :param url: the server's URL (scheme, host, port, and the mount point if any).
    :param token: the control token; never shown by ``repr()``.
    :param timeout: seconds to wait for each answer.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ControlClient({self.url!r}, token=<hidden>)"

    def request(self, method: str, path: str, body: bytes | None = None, **headers: Any) -> Reply:
        """``method`` ``path``: the answer, also for a 4xx or 5xx status.

        Raises :class:`RedirectRefused` for a redirect, :class:`PeerUnreachable` when
        nothing answers.
        """
        request = urllib.request.Request(
            self.url + path,
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", **headers},
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as answer:
                return Reply(answer.status, answer.read(), answer.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, exc.read(), exc.headers.get_content_type())
        except (OSError, ValueError) as exc:  # URLError is an OSError; ValueError: a bad URL
            _unreachable(self.url, exc)

    def get(self, path: str) -> Reply:
        """``GET path``, whatever the answer's status."""
        return self.request("GET", path)

    def post(self, path: str, body: bytes = b"", **headers: Any) -> Reply:
        """``POST path`` with ``body`` and ``headers``, whatever the answer's status."""
        return self.request("POST", path, body, **headers)


def _unreachable(url: str, exc: BaseException) -> NoReturn:
    reason = getattr(exc, "reason", exc)
    raise PeerUnreachable(f"cannot reach {url}: {reason}") from None
