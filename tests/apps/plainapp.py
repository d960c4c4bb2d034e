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


def root() -> bytes:
    return b"the root page"  # no test asks for it: whoever does adds this line


def app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ["PATH_INFO"]
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
