"""A control request and its answer, in no protocol's terms.

The control routes are written once, against these two; each door (the WSGI
middleware, the ASGI one) turns what its server hands it into a
:class:`ControlRequest` and an :class:`Answer` back into what its server sends.
The request is werkzeug's protocol-neutral one (``werkzeug.sansio``, as Quart
uses it): parsed query, headers, mimetype and ``Authorization``, with the body
read through the door, only as far as a route allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.sansio.request import Request

__all__ = ["Answer", "ControlRequest", "json_answer"]

#: Reads the request body, at most ``limit`` bytes; a longer body raises
#: :class:`werkzeug.exceptions.RequestEntityTooLarge`.
BodyReader = Callable[[int], bytes]


class ControlRequest(Request):
    """One control request, as a door received it.

    :param raw_target: the request target exactly as the client spelled it (before
        the server decoded it), when the server says; see :attr:`spelled_exactly`.
    :param read_body: the door's way to read the body, at most so many bytes.
    :param server_handle: what the door needs to stop its server (the WSGI environ,
        the ASGI scope); the routes never look inside it.
    """

    def __init__(
        self,
        *,
        method: str,
        root_path: str,
        path: str,
        query_string: bytes,
        headers: Headers,
        remote_addr: str | None,
        raw_target: str | None,
        read_body: BodyReader,
        server_handle: Any = None,
    ) -> None:
        super().__init__(method, "http", None, root_path, path, query_string, headers, remote_addr)
        # As the server gives it: "post" is not POST (RFC 9110: methods are case-sensitive;
        # werkzeug's Request would upper-case it). A server may upper-case methods itself:
        # there a "post" arrives as POST and is served as one. Harmless: it needs the
        # token all the same, it is just not refused as the other method it is.
        self.method = method
        self.raw_target = raw_target
        self._read_body = read_body
        self.server_handle = server_handle

    def body(self, limit: int) -> bytes:
        """The body, ``limit`` bytes at most (longer: ``RequestEntityTooLarge``, a 413)."""
        return self._read_body(limit)


@dataclass
class Answer:
    """What a control route answers: a status, headers and a body held in memory.

    ``after`` runs once the body is on the wire (the shutdown route's stop: stopping
    first would lose the answer).
    """

    status: int
    body: bytes = b""
    headers: Headers = field(default_factory=Headers)
    after: Callable[[], object] | None = None

    @classmethod
    def of(cls, body: bytes, mimetype: str, status: int = 200) -> Answer:
        """An answer of ``body`` as ``mimetype`` (text types in UTF-8)."""
        content_type = f"{mimetype}; charset=utf-8" if mimetype.startswith("text/") else mimetype
        return cls(status, body, Headers({"Content-Type": content_type}))


def json_answer(body: dict[str, Any], status: int = 200) -> Answer:
    """A JSON answer: one line, ended by a newline."""
    return Answer.of((json.dumps(body) + "\n").encode(), "application/json", status)
