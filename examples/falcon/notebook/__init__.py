"""Notebook: a small Falcon app to measure end to end (routes, a form, templates, JSON)."""

from __future__ import annotations

import threading
from typing import Any

import falcon
from jinja2 import Environment, PackageLoader, select_autoescape

templates = Environment(loader=PackageLoader("notebook"), autoescape=select_autoescape())
MAX_TEXT = 500


def render(
    response: falcon.Response, name: str, status: str = falcon.HTTP_200, **values: Any
) -> None:
    response.status = status
    response.content_type = falcon.MEDIA_HTML
    response.text = templates.get_template(name).render(**values)


class Notes:
    """The notes, in memory, with the form's rules."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def validate(self, title: str, text: str) -> list[str]:
        errors = []
        if not title.strip():
            errors.append("A note needs a title.")
        if len(text) > MAX_TEXT:
            errors.append(f"Keep the text under {MAX_TEXT} characters.")
        return errors

    def add(self, title: str, text: str) -> dict[str, Any]:
        with self._lock:
            note = {"id": len(self.items) + 1, "title": title.strip(), "text": text}
            self.items.append(note)
        return note


class Home:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    def on_get(self, request: falcon.Request, response: falcon.Response) -> None:
        render(response, "home.html", notes=self.notes.items, errors=[], form={})

    def on_post(self, request: falcon.Request, response: falcon.Response) -> None:
        form = request.get_media()
        title, text = form.get("title", ""), form.get("text", "")
        errors = self.notes.validate(title, text)
        if errors:
            render(
                response,
                "home.html",
                falcon.HTTP_400,
                notes=self.notes.items,
                errors=errors,
                form=form,
            )
            return
        note = self.notes.add(title, text)
        raise falcon.HTTPSeeOther(f"/notes/{note['id']}")


class Note:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    def on_get(self, request: falcon.Request, response: falcon.Response, note_id: int) -> None:
        if not 1 <= note_id <= len(self.notes.items):
            raise falcon.HTTPNotFound(description="No such note.")
        render(response, "note.html", note=self.notes.items[note_id - 1])


class NotesApi:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    def on_get(self, request: falcon.Request, response: falcon.Response) -> None:
        response.media = {"notes": self.notes.items}


def not_found(
    request: falcon.Request, response: falcon.Response, error: Exception, params: Any
) -> None:
    description = getattr(error, "description", None) or "Nothing here."
    render(response, "error.html", falcon.HTTP_404, message=description)


def create_app() -> falcon.App:
    """The WSGI application with its own in-memory notes."""
    notes = Notes()
    app = falcon.App()
    app.add_route("/", Home(notes))
    app.add_route("/notes/{note_id:int}", Note(notes))
    app.add_route("/api/notes", NotesApi(notes))
    app.add_error_handler(falcon.HTTPNotFound, not_found)
    return app
