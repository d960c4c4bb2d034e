"""The live control routes: save, reset (``?to=start``), context, status and data.

Each is a small handler from a WSGI environ to a :class:`werkzeug.wrappers.Response`
with a JSON body (the data route answers the SQLite file itself). The middleware
has already checked the method, the client address and the token. Under a
pre-fork server, save, reset and context reach every process and data combines
every process's file (see :mod:`.workers`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from .workers import ProcessGroup

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ControlRoutes", "json_response"]

#: Longest accepted context name: a test's node id fits easily.
MAX_CONTEXT = 1024
#: Seconds a context switch waits for the requests in flight to finish first.
CONTEXT_SETTLE = 0.25


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body) + "\n", status=status, mimetype="application/json")


class ControlRoutes:
    """The handlers behind ``<prefix>/save``, ``/reset``, ``/context``, ``/status``, ``/data``."""

    def __init__(self, group: ProcessGroup, in_flight: Callable[[], int]) -> None:
        self.group = group
        self.session = group.session
        self._in_flight = in_flight

    def table(self, prefix: str) -> dict[str, tuple[str, Callable[[WSGIEnvironment], Response]]]:
        """``PATH_INFO`` -> (the one method allowed, handler)."""
        return {
            f"{prefix}/save": ("POST", self.save),
            f"{prefix}/reset": ("POST", self.reset),
            f"{prefix}/context": ("POST", self.context),
            f"{prefix}/status": ("GET", self.status),
            f"{prefix}/data": ("GET", self.data),
        }

    def save(self, environ: WSGIEnvironment) -> Response:
        answers, errors = self.group.broadcast({"op": "save"})
        return json_response(
            {"saved": [a["pid"] for a in answers], "errors": errors}, _status(errors)
        )

    def reset(self, environ: WSGIEnvironment) -> Response:
        """Forget everything measured, or with ``?to=start`` all but what start-up ran."""
        to = Request(environ).args.get("to")
        if to not in (None, "start"):
            return json_response(
                {"error": "reset takes no query, or to=start to keep what start-up ran"}, 400
            )
        if to == "start" and not self.session.remembers_start_up:
            return json_response(
                {"error": "no start-up state was recorded in this process; reset without"
                 " to=start, or wrap the app in CovGuard"},
                409,
            )  # fmt: skip
        command = {"op": "reset", "to": to} if to else {"op": "reset"}
        answers, errors = self.group.broadcast(command)
        return json_response(
            {"reset": [a["pid"] for a in answers], "to": to or "nothing", "errors": errors},
            _status(errors),
        )

    def context(self, environ: WSGIEnvironment) -> Response:
        if not self.session.supports_contexts:
            return json_response(
                {"error": f"the {self.session.core} core records no dynamic contexts;"
                 " restart with `covguard serve --contexts` or start(contexts=True)"},
                409,
            )  # fmt: skip
        request = Request(environ)
        request.max_content_length = MAX_CONTEXT * 4
        try:
            name = _context_name(request)
        except RequestEntityTooLarge:
            return json_response(
                {"error": f"a context name is {MAX_CONTEXT} characters at most"}, 413
            )
        if name is None:
            return json_response(
                {"error": "send the context name as the body (text/plain, or JSON"
                 f' {{"context": "..."}}), 1 to {MAX_CONTEXT} characters'},
                400,
            )  # fmt: skip
        # A response the client has read may not be closed yet (its close() runs the
        # app's teardown, e.g. Flask's): give requests in flight a moment to finish
        # under the context they began in. Any still running then are noted.
        deadline = time.monotonic() + CONTEXT_SETTLE
        while self._in_flight() and time.monotonic() < deadline:
            time.sleep(0.005)
        answers, errors = self.group.broadcast({"op": "context", "context": name})
        return json_response(
            {"context": name, "processes": [a["pid"] for a in answers], "errors": errors},
            _status(errors),
        )

    def status(self, environ: WSGIEnvironment) -> Response:
        session = self.session
        return json_response(
            {
                "pid": os.getpid(),
                "core": session.core,
                "measuring": not session.finished,
                "data_file": session.data_file,
                "context": session.context,
                "contexts_supported": session.supports_contexts,
                "in_flight": self._in_flight(),
                "workers": self.group.worker_count(),
                "warnings": session.warnings,
                "overlaps": session.overlaps,
                "overlap_count": session.overlap_count,
            }
        )

    def data(self, environ: WSGIEnvironment) -> Response:
        with self.group.combined() as path, open(path, "rb") as file:
            body = file.read()
        name = f".coverage.{socket.gethostname().replace('.', '_')}.pid{os.getpid()}.collected"
        response = Response(body, mimetype="application/vnd.sqlite3")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def _status(errors: list[str]) -> int:
    """507 Insufficient Storage when a process could not write its data, else 200."""
    return 507 if any("could not save" in error for error in errors) else 200


def _context_name(request: Request) -> str | None:
    """The context from a text/plain body or JSON ``{"context": ...}``; None if unusable."""
    raw = request.get_data(cache=False)
    name: Any
    if request.mimetype == "application/json":
        try:
            name = json.loads(raw).get("context")
        except (ValueError, AttributeError, RecursionError):  # RecursionError: deep nesting
            return None
    else:
        try:
            name = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_CONTEXT or not name.isprintable():
        return None
    return name
