"""streams.delivery.client.DeliveryClient against a real HTTP server on loopback (no Kafka):
what skipping httpx.AsyncClient must not lose, and what it must not gain."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from streams.delivery.client import USER_AGENT, Answer, DeliveryClient
from streams.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _with_server(handler: Handler, body: Callable[[DeliveryClient, str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client = DeliveryClient(Settings.from_env({"HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1",
                                                   "HOOKSTREAM_DELIVERY_TIMEOUT": "5"}))
        try:
            return await body(client, f"http://127.0.0.1:{port}")
        finally:
            await client.aclose()
            await runner.cleanup()

    return asyncio.run(main())


def test_posts_body_and_headers_and_returns_status() -> None:
    seen: list[tuple[str, bytes, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read(), request.headers.copy()))
        return web.Response(status=204)

    async def body(client: DeliveryClient, base: str) -> Answer:
        return await client.post(f"{base}/hook", b'{"a":1}', {"X-Webhook-ID": "wh_1"},
                                 keep=10)

    assert _with_server(handler, body) == Answer(204, b"", None)
    method, sent, headers = seen[0]
    assert (method, sent) == ("POST", b'{"a":1}')
    assert headers["X-Webhook-ID"] == "wh_1"
    assert headers["User-Agent"] == USER_AGENT


def test_the_first_post_loads_no_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS context (48-75 ms of certificate loading) is built with the client, at the
    worker's start: a first delivery that built it held the event loop, and every other
    delivery behind it."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def body(client: DeliveryClient, base: str) -> Answer:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a TLS context built at a post")

        monkeypatch.setattr(httpx, "create_ssl_context", refuse)
        monkeypatch.setattr(ssl, "create_default_context", refuse)
        return await client.post(f"{base}/hook", b"{}", {}, keep=0)

    assert _with_server(handler, body).status == 200


def test_the_answers_retry_after_comes_back_as_sent() -> None:
    """The sender reads it on a 429 or 503 (streams.core.retryafter); the client only
    hands it over, whatever the status, in either form."""
    answers = {"/seconds": (429, "120"), "/date": (503, "Wed, 21 Oct 2037 07:28:00 GMT"),
               "/none": (503, None)}

    async def handler(request: web.Request) -> web.Response:
        status, retry_after = answers[request.path]
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return web.Response(status=status, body=b"busy", headers=headers)

    async def body(client: DeliveryClient, base: str) -> list[Answer]:
        return [await client.post(f"{base}{path}", b"{}", {}, keep=4) for path in answers]

    assert _with_server(handler, body) == [Answer(status, b"busy", retry_after)
                                           for status, retry_after in answers.values()]


def test_a_receivers_cookie_is_never_sent_back() -> None:
    """One jar for every tenant would hand one receiver's cookies to another webhook."""
    cookies: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "tenant-a-secret")
        return response

    async def body(client: DeliveryClient, base: str) -> None:
        await client.post(f"{base}/a", b"{}", {}, keep=0)
        await client.post(f"{base}/b", b"{}", {}, keep=0)

    _with_server(handler, body)
    assert cookies == [None, None]


def test_redirects_are_answers_not_followed() -> None:
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path)
        raise web.HTTPFound("/elsewhere")

    async def body(client: DeliveryClient, base: str) -> Answer:
        return await client.post(f"{base}/hook", b"{}", {}, keep=0)

    status, _, _ = _with_server(handler, body)
    assert status == 302
    assert paths == ["/hook"]


def test_keeps_only_the_start_of_a_large_answer_and_reuses_connections() -> None:
    peers: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        size = 1 << 20 if request.path == "/huge" else 1000
        return web.Response(status=500, body=b"x" * size)

    async def body(client: DeliveryClient, base: str) -> list[Answer]:
        return [await client.post(f"{base}/small", b"{}", {}, keep=200),
                await client.post(f"{base}/small", b"{}", {}, keep=200),
                await client.post(f"{base}/huge", b"{}", {}, keep=200)]

    answers = _with_server(handler, body)
    assert answers == [Answer(500, b"x" * 200, None)] * 3
    # Small answers are read to the end, so the second request rides the first connection.
    assert peers[0] == peers[1]
