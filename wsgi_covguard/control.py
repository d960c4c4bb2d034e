"""The live control routes: save, reset (``?to=start``), context, status and data.

Each is a small handler from a :class:`~.messages.ControlRequest` to an
:class:`~.messages.Answer` with a JSON body (the data route answers the SQLite
file itself); :class:`~.routes.Routes` has already checked the method, the client
address and the token. Under a pre-fork server, save, reset and context reach
every process and data combines every process's file (see :mod:`.workers`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge

from .messages import Answer, ControlRequest, json_answer
from .routes import Route
from .workers import Failure, Siblings

__all__ = ["LiveControls"]

#: Longest accepted context name: a test's node id fits easily.
MAX_CONTEXT = 1024
#: Seconds a context switch waits for the requests in flight to finish first.
CONTEXT_SETTLE = 0.25


class LiveControls:
    """The handlers behind ``<prefix>/save``, ``/reset``, ``/context``, ``/status``, ``/data``.

    :param group: this process and its siblings, whose data the routes act on.
    :param in_flight: how many requests the app is serving now.
    :param wait_out: waits until the requests the app serves now have ended, at most so
        many seconds.
    """

    def __init__(
        self,
        group: Siblings,
        in_flight: Callable[[], int],
        wait_out: Callable[[float], object],
    ) -> None:
        self.group = group
        self.session = group.session
        self._in_flight = in_flight
        self._wait_out = wait_out

    def routes(self, prefix: str) -> list[Route]:
        """The routes under ``prefix``: each changes state (POST) or reads it (GET),
        with the Bearer token only."""
        return [
            Route(f"{prefix}/save", "POST", self.save),
            Route(f"{prefix}/reset", "POST", self.reset),
            Route(f"{prefix}/context", "POST", self.context),
            Route(f"{prefix}/status", "GET", self.status),
            Route(f"{prefix}/data", "GET", self.data),
        ]

    def save(self, request: ControlRequest) -> Answer:
        """Write every process's data file now; measuring goes on."""
        answers, errors = self.group.broadcast({"op": "save"})
        return json_answer(
            {"saved": [a["pid"] for a in answers], "errors": _said(errors)}, _status(errors)
        )

    def reset(self, request: ControlRequest) -> Answer:
        """Forget everything measured, or with ``?to=start`` all but what start-up ran."""
        to = request.args.get("to")
        if to not in (None, "start"):
            return json_answer(
                {"error": "reset takes no query, or to=start to keep what start-up ran"}, 400
            )
        if to == "start" and not self.session.remembers_start_up:
            return json_answer(
                {"error": "no start-up state was recorded in this process; reset without"
                 " to=start, or wrap the app in CovGuard"},
                409,
            )  # fmt: skip
        command = {"op": "reset", "to": to} if to else {"op": "reset"}
        answers, errors = self.group.broadcast(command)
        return json_answer(
            {"reset": [a["pid"] for a in answers], "to": to or "nothing", "errors": _said(errors)},
            _status(errors),
        )

    def context(self, request: ControlRequest) -> Answer:
        """Record every process's lines from now on under the context the body names."""
        why_not = self.session.why_no_contexts
        if why_not is not None:
            return json_answer(
                {"error": f"the {self.session.core} core records no dynamic contexts here:"
                 f" {why_not}; or restart with `covguard serve --contexts`, which uses ctrace"},
                409,
            )  # fmt: skip
        try:
            name = _context_name(request)
        except RequestEntityTooLarge:
            return json_answer(
                {"error": f"a context name is {MAX_CONTEXT} characters at most"}, 413
            )
        if name is None:
            return json_answer(
                {"error": "send the context name as the body (text/plain, or JSON"
                 f' {{"context": "..."}}), 1 to {MAX_CONTEXT} characters'},
                400,
            )  # fmt: skip
        # A response the client has read may not be closed yet (its close() runs the
        # app's teardown, e.g. Flask's): give requests in flight a moment to finish
        # under the context they began in; any still running then are noted. Not those
        # that arrive meanwhile: a busy server always has one in flight, and a worker
        # thread held here for the whole settle cost it 9% of its throughput (make bench).
        self._wait_out(CONTEXT_SETTLE)
        answers, errors = self.group.broadcast({"op": "context", "context": name})
        return json_answer(
            {"context": name, "processes": [a["pid"] for a in answers], "errors": _said(errors)},
            _status(errors),
        )

    def status(self, request: ControlRequest) -> Answer:
        """This process's state: core, data file, context, requests in flight, warnings."""
        session = self.session
        return json_answer(
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

    def data(self, request: ControlRequest) -> Answer:
        """Every process's data so far, combined, as a data file to download (nothing saved)."""
        with self.group.combined() as path, open(path, "rb") as file:
            body = file.read()
        name = f".coverage.{socket.gethostname().replace('.', '_')}.pid{os.getpid()}.collected"
        answer = Answer.of(body, "application/vnd.sqlite3")
        answer.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return answer


def _said(errors: list[Failure]) -> list[str]:
    return [str(error) for error in errors]


def _status(errors: list[Failure]) -> int:
    """507 Insufficient Storage when a process could not write its data, else 200."""
    return 507 if any(error.saving for error in errors) else 200


def _context_name(request: ControlRequest) -> str | None:
    """The context from a text/plain body or JSON ``{"context": ...}``; None if unusable."""
    raw = request.body(MAX_CONTEXT * 4)
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
