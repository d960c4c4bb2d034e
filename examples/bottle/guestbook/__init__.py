"""Guestbook: a small Bottle app to measure end to end (routes, a form, templates, JSON)."""

from __future__ import annotations

import os
import threading
from typing import Any

import bottle

VIEWS = os.path.join(os.path.dirname(__file__), "views")
MAX_MESSAGE = 280


def validate(name: str, message: str) -> list[str]:
    """The form's rules; an empty list means the entry is fine."""
    errors = []
    if not name.strip():
        errors.append("Please tell us your name.")
    if not message.strip():
        errors.append("An empty message is no message.")
    elif len(message) > MAX_MESSAGE:
        errors.append(f"Keep it under {MAX_MESSAGE} characters.")
    return errors


def create_app() -> bottle.Bottle:
    """Build the application with its own in-memory list of entries."""
    app = bottle.Bottle()
    entries: list[dict[str, Any]] = []
    lock = threading.Lock()

    def page(name: str, **values: Any) -> str:
        return str(bottle.template(name, template_lookup=[VIEWS], **values))

    @app.get("/")
    def index() -> str:
        return page("index", entries=list(reversed(entries)), errors=[], form={})

    @app.post("/sign")
    def sign() -> str:
        form = bottle.request.forms
        name, message = form.getunicode("name", ""), form.getunicode("message", "")
        errors = validate(name, message)
        if errors:
            bottle.response.status = 400
            return page("index", entries=list(reversed(entries)), errors=errors, form=form)
        with lock:
            entries.append({"id": len(entries) + 1, "name": name.strip(), "message": message})
            entry_id = len(entries)
        bottle.redirect(f"/entries/{entry_id}")

    @app.get("/entries/<entry_id:int>")
    def show(entry_id: int) -> str:
        if not 1 <= entry_id <= len(entries):
            bottle.abort(404, "No such entry.")
        return page("entry", entry=entries[entry_id - 1])

    @app.get("/api/entries")
    def api_entries() -> dict[str, Any]:
        return {"entries": entries}

    @app.error(404)
    def not_found(error: bottle.HTTPError) -> str:
        return page("error", message=error.body or "Not found.")

    return app
