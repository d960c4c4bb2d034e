"""Shortlinks: a small FastAPI app to measure end to end.

Pages rendered with Jinja2, a JSON API the page's own script calls (validated by
pydantic), a redirect, a websocket that announces each new link, a background task
and a lifespan: the parts of an ASGI app that a live-server test reaches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from .store import Link, LinkStore, NewLink

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def create_app(store: LinkStore | None = None) -> FastAPI:
    """Build the application; each call gets its own in-memory store."""
    links = store or LinkStore()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await links.close_watchers()  # the app's own shutdown: say goodbye to open pages

    app = FastAPI(title="Shortlinks", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "index.html", {"links": links.all()})

    @app.get("/links/{code}", response_class=HTMLResponse)
    def show_link(request: Request, code: str) -> HTMLResponse:
        link = links.get(code)
        if link is None:
            raise HTTPException(404)
        return TEMPLATES.TemplateResponse(request, "link.html", {"link": link})

    @app.get("/go/{code}")
    def follow(code: str, tasks: BackgroundTasks) -> RedirectResponse:
        link = links.get(code)
        if link is None:
            raise HTTPException(404)
        tasks.add_task(links.count_visit, code)  # after the answer is sent
        return RedirectResponse(link.target, status_code=307)

    @app.get("/api/links")
    def api_links() -> list[Link]:
        return links.all()

    @app.post("/api/links", status_code=201)
    async def api_add(new: NewLink) -> Link:
        return await links.add(new)

    @app.websocket("/ws/links")
    async def watch(websocket: WebSocket) -> None:
        """Tell an open page of each new link, until the page goes or the server stops."""
        await websocket.accept()
        queue = links.watch()
        gone = asyncio.ensure_future(websocket.receive())  # the page never speaks: it leaves
        try:
            while True:
                news = asyncio.ensure_future(queue.get())
                await asyncio.wait({gone, news}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done():  # the page went away
                    news.cancel()
                    return
                link = news.result()
                if link is None:  # the server stops
                    break
                await websocket.send_json(link.model_dump())
        finally:
            links.unwatch(queue)
            gone.cancel()
        await websocket.close()

    @app.exception_handler(StarletteHTTPException)
    def not_found(request: Request, error: StarletteHTTPException) -> HTMLResponse:
        context = {"message": "No such page or link." if error.status_code == 404 else error.detail}
        return TEMPLATES.TemplateResponse(request, "error.html", context, error.status_code)

    return app
