"""A framework-free WSGI app with a slow route, for drain and signal tests."""

import os
import time


def slow(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"x" * 200_000  # big enough to span many socket writes


def counted(request_id: str) -> bytes:
    # One unbuffered append per request: the log survives however the process ends.
    log = os.open("requests.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(log, request_id.encode() + b"\n")
    finally:
        os.close(log)
    return b"counted"


def drip():  # type: ignore[no-untyped-def]
    """A streamed body, a chunk every 0.2 s for a minute: it outlasts any stop."""
    for number in range(300):
        yield b"%d\n" % number  # a stream's line: it runs as long as it streams
        time.sleep(0.2)


def events():  # type: ignore[no-untyped-def]
    """Server-sent events, one every half second for a minute (a feed that never ends)."""
    for number in range(120):
        yield b"data: %d\n\n" % number
        time.sleep(0.5)


def root() -> bytes:
    return b"the root page"  # no test asks for it: whoever does adds this line


def app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ["PATH_INFO"]
    if path in ("/drip", "/events"):
        kind = "text/event-stream" if path == "/events" else "text/plain"
        start_response("200 OK", [("Content-Type", kind)])
        return drip() if path == "/drip" else events()
    if path == "/big":  # 30 MB, for a client that reads it slowly
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * 30_000_000]
    if path == "/slow":
        body = slow(float(environ.get("QUERY_STRING") or "1.5"))
    elif path == "/hello":
        body = b"hello"
    elif path == "/counted":
        body = counted(environ.get("QUERY_STRING", ""))
    elif path == "/":
        body = root()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found by the app"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
