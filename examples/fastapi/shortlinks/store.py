"""An in-memory store of links, with the form's rules (pydantic) and a feed of new links."""

from __future__ import annotations

import asyncio
import secrets

from pydantic import BaseModel, Field, HttpUrl


class NewLink(BaseModel):
    """What the page posts: the rules are the API's, so the page shows the API's own errors."""

    target: HttpUrl
    title: str = Field(min_length=1, max_length=80)


class Link(BaseModel):
    code: str
    target: str
    title: str
    visits: int = 0


class LinkStore:
    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._watchers: set[asyncio.Queue[Link | None]] = set()

    def all(self) -> list[Link]:
        return sorted(self._links.values(), key=lambda link: link.title.lower())

    def get(self, code: str) -> Link | None:
        return self._links.get(code)

    async def add(self, new: NewLink) -> Link:
        link = Link(code=secrets.token_urlsafe(4), target=str(new.target), title=new.title.strip())
        self._links[link.code] = link
        for queue in self._watchers:
            await queue.put(link)
        return link

    def count_visit(self, code: str) -> None:
        self._links[code].visits += 1

    def watch(self) -> asyncio.Queue[Link | None]:
        queue: asyncio.Queue[Link | None] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[Link | None]) -> None:
        self._watchers.discard(queue)

    async def close_watchers(self) -> None:
        for queue in self._watchers:
            await queue.put(None)
