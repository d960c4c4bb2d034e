"""Bookshelf: a small Pyramid app to measure end to end (routes, a form, templates, JSON)."""

from __future__ import annotations

import threading
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.request import Request
from pyramid.router import Router
from pyramid.view import notfound_view_config, view_config

YEAR_RANGE = range(1450, 2101)


class Shelf:
    """The books, in memory, with the form's validation rules."""

    def __init__(self) -> None:
        self.books: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def validate(self, title: str, year: str) -> list[str]:
        errors = []
        if not title.strip():
            errors.append("Every book needs a title.")
        if not year.isdigit() or int(year) not in YEAR_RANGE:
            errors.append(f"The year must be between {YEAR_RANGE.start} and {YEAR_RANGE.stop - 1}.")
        return errors

    def add(self, title: str, year: str) -> dict[str, Any]:
        with self._lock:
            book = {"id": len(self.books) + 1, "title": title.strip(), "year": int(year)}
            self.books.append(book)
        return book


@view_config(route_name="home", request_method="GET", renderer="templates/home.jinja2")
def home(request: Request) -> dict[str, Any]:
    return {"books": request.registry.shelf.books, "errors": [], "form": {}}


@view_config(route_name="home", request_method="POST", renderer="templates/home.jinja2")
def add_book(request: Request) -> Any:
    shelf: Shelf = request.registry.shelf
    title, year = request.POST.get("title", ""), request.POST.get("year", "")
    errors = shelf.validate(title, year)
    if errors:
        request.response.status = 400
        return {"books": shelf.books, "errors": errors, "form": request.POST}
    book = shelf.add(title, year)
    return HTTPFound(location=request.route_url("book", id=book["id"]))


@view_config(route_name="book", renderer="templates/book.jinja2")
def show_book(request: Request) -> dict[str, Any]:
    books = request.registry.shelf.books
    index = int(request.matchdict["id"]) - 1
    if not 0 <= index < len(books):
        raise HTTPNotFound("No such book on the shelf.")
    return {"book": books[index]}


@view_config(route_name="api_books", renderer="json")
def api_books(request: Request) -> dict[str, Any]:
    return {"books": request.registry.shelf.books}


@notfound_view_config(renderer="templates/notfound.jinja2")
def not_found(request: Request) -> dict[str, Any]:
    request.response.status = 404
    return {"message": getattr(request.exception, "detail", None) or "Nothing here."}


def main(global_config: dict[str, Any] | None = None, **settings: Any) -> Router:
    """The WSGI application, as ``paste.app_factory`` and pserve expect it."""
    with Configurator(settings=settings) as config:
        config.include("pyramid_jinja2")
        config.add_route("home", "/")
        config.add_route("book", r"/books/{id:\d+}")
        config.add_route("api_books", "/api/books")
        config.registry.shelf = Shelf()
        config.scan(__name__)
        return config.make_wsgi_app()
