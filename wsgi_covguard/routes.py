"""The control routes in one table: who may call them, and how they fail.

Every route is one :class:`Route` entry: its path, its one method, its handler and
whether it only reads (a browser may then use HTTP Basic with the token as the
password). werkzeug's :class:`~werkzeug.routing.Map` matches the path; the rest is
the same for every route and written once, here:

1. a path spelled another way than the client sent it (``/%5F%5Fshutdown%5F%5F``)
   is not ours: the application gets it;
2. the wrong method: 405 with ``Allow``, before anything else is looked at;
3. a client outside loopback: 403, unless remote clients are allowed; so is a request
   that came through a proxy (it carries a forwarding header): the server may have taken
   its client address from that header (a server's ``--proxy-headers``, werkzeug's
   ``ProxyFix``, any proxy-fix middleware), which any client writes;
4. no valid token: 401 (a page, so a browser asks) or 403;
5. the handler; its errors become one-line JSON answers: werkzeug's HTTP errors
   keep their status, data that cannot be read or written is 507, coverage.py's
   own refusals (nothing measured yet) 409;
6. every answer is locked to its own origin (no framing, sniffing, caching or
   referrer; a Content Security Policy).

The table knows no protocol: requests and answers are :mod:`.messages`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import coverage
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, PathConverter, RequestRedirect, Rule

from .auth import Token, is_loopback
from .errors import SaveError
from .messages import Answer, ControlRequest, json_answer
from .settings import ALLOW_REMOTE_ENV

__all__ = ["FORWARDING", "NOTHING_ALLOWED", "Route", "Routes"]

#: Where the dashboard's password comes from, as its refusals say.
HOW = "`covguard dashboard` prints it; any user name"

#: The headers a proxy adds to name the client it forwards, and from which servers and their
#: proxy middleware take the client address: a control request carrying one is not taken
#: for a loopback client's, whatever address it arrived with.
FORWARDING = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Cluster-Client-IP",
    "X-Original-Forwarded-For",
)

#: The Content Security Policy of a control answer that is not a page: nothing may run.
NOTHING_ALLOWED = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

Handler = Callable[..., Answer]


@dataclass(frozen=True)
class Route:
    """One control route: ``path`` (werkzeug rule syntax; ``<rest:name>`` takes the rest
    of the path, empty or not), its one ``method``, and its ``handler``, called with
    the request and the path's values.
    """

    path: str
    method: str
    handler: Handler
    read_only: bool = False


class _Rest(PathConverter):
    """The rest of the path, whatever it is (even empty, or starting with ``/``): the
    handler decides, so a strange path under a route is answered by it, not the app."""

    regex = "/?.*?"  # werkzeug's matcher needs the optional slash spelled out


class Routes:
    """The control routes of one server, and the rules every one of them obeys.

    :param routes: the table.
    :param token: the token a request must carry.
    :param allow_remote: accept clients outside loopback.
    """

    def __init__(self, routes: Iterable[Route], *, token: Token, allow_remote: bool) -> None:
        self._routes = list(routes)
        self._token = token
        self.allow_remote = allow_remote
        rules = [
            Rule(route.path, endpoint=index)  # any method: a wrong one is answered 405
            for index, route in enumerate(self._routes)
        ]
        self._adapter = Map(
            rules, converters={"rest": _Rest}, strict_slashes=True, merge_slashes=False
        ).bind("covguard")
        # The first segment of every route: most requests are the app's, and are let
        # through after one comparison.
        self._roots = tuple({_first_segment(route.path) for route in self._routes})

    def may_claim(self, path: str) -> bool:
        """True if ``path`` could be a control route (a cheap test, for every request)."""
        return path.startswith(self._roots)

    def claims(self, request: ControlRequest) -> bool:
        """True if ``request`` is a control request (answered here), False if the app's."""
        return self._match(request) is not None

    def answer(self, request: ControlRequest) -> Answer | None:
        """The answer to ``request``, or None if it is not a control request (the app's)."""
        found = self._match(request)
        if found is None:
            return None
        route, values = found
        answer = self._checked(route, values, request)
        headers = answer.headers
        headers.setdefault("Content-Security-Policy", NOTHING_ALLOWED)
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Cache-Control"] = "no-store"
        headers["Referrer-Policy"] = "no-referrer"
        return answer

    def _match(self, request: ControlRequest) -> tuple[Route, dict[str, Any]] | None:
        if not self.may_claim(request.path) or not _spelled_exactly(request):
            return None
        try:
            endpoint, values = self._adapter.match(request.path)
        except (NotFound, RequestRedirect):  # a path of the app's, or one slash short
            return None
        return self._routes[endpoint], dict(values)

    def _checked(self, route: Route, values: dict[str, Any], request: ControlRequest) -> Answer:
        if request.method != route.method:  # exactly: not HEAD, not "post" (unless upper-cased)
            answer = json_answer({"error": f"method not allowed; use {route.method}"}, 405)
            answer.headers["Allow"] = route.method
            return answer
        if not self.allow_remote:
            forwarded = next((name for name in FORWARDING if name in request.headers), None)
            if forwarded is not None or not is_loopback(request.remote_addr):
                through = f", and this one came through a proxy ({forwarded})" if forwarded else ""
                return json_answer(
                    {
                        "error": f"control requests are accepted from loopback only{through}"
                        f" (set {ALLOW_REMOTE_ENV}=1 to allow others)"
                    },
                    403,
                )
        header = request.headers.get("Authorization", "")
        if self._token.matches_bearer(header) or (
            route.read_only and self._token.matches_basic(Authorization.from_header(header))
        ):
            return _handled(route, values, request)
        if route.read_only and not header:
            answer = json_answer({"error": f"log in with the dashboard's password ({HOW})"}, 401)
            answer.headers["WWW-Authenticate"] = 'Basic realm="covguard", charset="UTF-8"'
            return answer
        if route.read_only and self._token.is_itself(Authorization.from_header(header)):
            # Never the token as a password: the browser would send it to the app as well.
            answer = json_answer({"error": f"not the token: the dashboard's password ({HOW})"}, 401)
            answer.headers["WWW-Authenticate"] = 'Basic realm="covguard", charset="UTF-8"'
            return answer
        return json_answer({"error": "missing or wrong 'Authorization: Bearer' token"}, 403)


def _handled(route: Route, values: dict[str, Any], request: ControlRequest) -> Answer:
    try:
        return route.handler(request, **values)
    except HTTPException as exc:
        return json_answer({"error": exc.description or exc.name}, exc.code or 500)
    except (SaveError, OSError) as exc:  # the data could not be read or written: say so
        return json_answer({"error": str(exc)}, 507)
    except coverage.CoverageException as exc:  # e.g. nothing measured to report yet
        return json_answer({"error": str(exc)}, 409)


def _first_segment(rule: str) -> str:
    """``/__coverage__/html/<rest:rest>`` -> ``/__coverage__``."""
    segment = rule.split("/", 2)[1].split("<", 1)[0]
    return "/" + segment


def _spelled_exactly(request: ControlRequest) -> bool:
    """True unless the raw request target spells the control path another way.

    Servers decode the path: ``/%5F%5Fshutdown%5F%5F`` arrives as ``/__shutdown__``. A
    control route answers only its exact spelling, so the raw target (which every WSGI
    server but the standard library's gives) must be the mount point and path to the
    letter, or the path alone where a proxy took the mount point off before the server
    put it back (a server's ``--root-path``: the client's target is ``/__shutdown__``).
    """
    raw = request.raw_target
    if raw is None:
        return True
    target = raw.split("?", 1)[0]
    if "://" in target:  # absolute-form: http://host/path
        target = urlsplit(target).path
    return target in (request.root_path + request.path, request.path)
