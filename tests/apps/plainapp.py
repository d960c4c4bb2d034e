"""A framework-free WSGI app with a slow route, for drain and signal tests."""

import time


def slow(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"x" * 200_000  # big enough to span many socket writes


def app(environ, start_response):  # type: ignore[no-untyped-def]
    path = environ["PATH_INFO"]
    if path == "/slow":
        body = slow(float(environ.get("QUERY_STRING") or "1.5"))
    elif path == "/hello":
        body = b"hello"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found by the app"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
