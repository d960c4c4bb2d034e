"""Loopback means the peer: a control request that came through a proxy is remote.

Servers and their proxy middleware take the client address from forwarding headers,
which any client can write: uvicorn and daphne ``--proxy-headers``, werkzeug's
``ProxyFix``, hypercorn's ``ProxyFixMiddleware``. Each one's own client-address handling
is driven here, in-process, with a remote peer claiming to be 127.0.0.1: the address it
hands on is loopback, and the control routes still refuse. Then the two servers whose
command line does it, for real, on loopback: a request carrying the header is refused,
one without it is served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from live import BIN, TOKEN, RunningServer, free_port
from test_units import BEARER, ROUTES
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import EnvironBuilder

from wsgi_covguard.asgi import _Body
from wsgi_covguard.asgi import _control_request as asgi_request
from wsgi_covguard.messages import Answer
from wsgi_covguard.middleware import _control_request as wsgi_request

#: What these check is the door's and the server's, the same on every core: one Python.
pytestmark = pytest.mark.core_independent

REMOTE = "10.9.8.7"  # a peer outside loopback: only ever an address in a dict here


def refused(answer: Answer | None) -> str:
    assert answer is not None
    assert answer.status == 403
    error = str(json.loads(answer.body)["error"])
    assert "loopback only" in error
    return error


def test_werkzeug_proxyfix_hands_on_loopback_and_the_routes_still_refuse() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    headers = {**BEARER, "X-Forwarded-For": "127.0.0.1"}
    environ = EnvironBuilder(path="/__shutdown__", method="POST", headers=headers).get_environ()
    environ["REMOTE_ADDR"] = REMOTE
    ProxyFix(app, x_for=1)(environ, lambda *_: None)  # type: ignore[arg-type]
    assert seen["REMOTE_ADDR"] == "127.0.0.1", "werkzeug took the client from the header"
    assert "(X-Forwarded-For)" in refused(ROUTES.answer(wsgi_request(seen)))


def _through(middleware: Callable[[Any], Any], headers: list[tuple[bytes, bytes]]) -> Answer | None:
    """``middleware`` around an ASGI app that keeps the scope it gets, called with a remote
    peer's shutdown request; the control routes' answer to what it handed on."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/__shutdown__", "raw_path": b"/__shutdown__", "root_path": "",
        "query_string": b"", "client": (REMOTE, 5000), "server": ("127.0.0.1", 8000),
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), *headers],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(middleware(app)(scope, receive, None))
        assert seen["client"][0] == "127.0.0.1", "the middleware took the client from a header"
        return ROUTES.answer(asgi_request(seen, _Body(), loop))
    finally:
        loop.close()


def test_uvicorn_proxy_headers_hand_on_loopback_and_the_routes_still_refuse() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    answer = _through(
        lambda app: ProxyHeadersMiddleware(app, trusted_hosts="*"),
        [(b"x-forwarded-for", b"127.0.0.1")],
    )
    assert "(X-Forwarded-For)" in refused(answer)


@pytest.mark.parametrize(
    ("mode", "header"),
    [("legacy", (b"x-forwarded-for", b"127.0.0.1")), ("modern", (b"forwarded", b"for=127.0.0.1"))],
)
def test_hypercorn_proxyfix_hands_on_loopback_and_the_routes_still_refuse(
    mode: str, header: tuple[bytes, bytes]
) -> None:
    from hypercorn.middleware import ProxyFixMiddleware

    answer = _through(lambda app: ProxyFixMiddleware(app, mode=mode), [header])  # type: ignore[arg-type]
    refused(answer)


#: The servers whose command line takes the client from X-Forwarded-For, as users start them.
PROXYING = {
    "uvicorn --proxy-headers": lambda port: [
        str(BIN / "uvicorn"), "notes_entry:app", "--host", "127.0.0.1", "--port", str(port),
        "--proxy-headers", "--forwarded-allow-ips=*",
    ],
    "daphne --proxy-headers": lambda port: [
        str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "--proxy-headers",
        "notes_entry:app",
    ],
}  # fmt: skip


@pytest.mark.parametrize("server", PROXYING)
def test_a_server_taking_the_client_from_headers_refuses_control_requests_carrying_them(
    server: str, plainapp: Path, servers: Callable[..., RunningServer]
) -> None:
    port = free_port()
    live = servers(PROXYING[server](port), cwd=plainapp, port=port).wait_listening()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # daphne takes the leftmost, client-written entry: 127.0.0.1 here.
    for claim in ("127.0.0.1", f"127.0.0.1, {REMOTE}"):
        forged = {**bearer, "X-Forwarded-For": claim}
        answer = live.post("/__shutdown__", headers=forged)
        assert answer.status_code == 403, answer.text
        assert "came through a proxy (X-Forwarded-For)" in answer.json()["error"]
    assert live.get("/hello").json() == {"hello": "world"}, "still serving: nothing stopped"
    status = requests.get(f"{live.url}/__coverage__/status", headers=bearer, timeout=10)
    assert status.status_code == 200, "a loopback client without the header is served"
    assert live.shutdown().status_code == 202
    assert live.wait(timeout=20) == 0, live.output()
    assert "Traceback" not in live.output()
