"""A small FastAPI app (ASGI) with a slow route, a streamed one, a background task,
websockets (one that answers, one that never listens) and a lifespan whose shutdown
leaves a mark: what the ASGI door must pass through untouched."""

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    with open("lifespan-shutdown.log", "a") as log:  # the app's own shutdown ran
        log.write(f"{os.getpid()}\n")


api = FastAPI(lifespan=lifespan)
NOTES = {1: "buy milk"}


@api.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}


@api.get("/notes/{number}")
def note(number: int) -> dict[str, object]:
    return {"number": number, "text": NOTES.get(number, "")}


@api.get("/slow")
async def slow(seconds: float = 1.5) -> StreamingResponse:
    await asyncio.sleep(seconds)

    async def chunks():
        for _ in range(20):
            yield b"x" * 10_000  # the body in many messages
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@api.get("/drip")
async def drip() -> StreamingResponse:
    async def chunks():
        for number in range(300):
            yield f"{number}\n".encode()  # a stream's line: it runs as long as it streams
            await asyncio.sleep(0.2)

    return StreamingResponse(chunks(), media_type="text/plain")


@api.get("/events")
async def events() -> StreamingResponse:
    async def feed():
        for number in range(120):
            yield f"data: {number}\n\n".encode()
            await asyncio.sleep(0.5)

    return StreamingResponse(feed(), media_type="text/event-stream")


@api.get("/big")
def big() -> PlainTextResponse:
    return PlainTextResponse("x" * 30_000_000)  # for a client that reads it slowly


def remember(text: str) -> None:
    NOTES[len(NOTES) + 1] = text


@api.post("/notes")
def add(text: str, tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(remember, text)  # runs after the answer is sent
    return {"added": text}


@api.get("/counted")
async def counted(request: Request) -> PlainTextResponse:
    # One unbuffered append per request: the log survives however the process ends.
    log = os.open("requests.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(log, request.url.query.encode() + b"\n")
    finally:
        os.close(log)
    return PlainTextResponse("counted")


@api.get("/never")
def never() -> dict[str, str]:
    return {"never": "asked"}  # no test asks for it: whoever does adds this line


@api.websocket("/ws/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@api.websocket("/ws/deaf")
async def deaf(websocket: WebSocket) -> None:
    """Sends once, then never listens: it cannot hear its client leave, nor end by itself."""
    await websocket.accept()
    await websocket.send_text("hello")
    try:
        await asyncio.Event().wait()
    finally:
        with open("deaf-ended.log", "a") as log:  # its cleanup ran
            log.write("ended\n")
