"""(t) HTTP clients side by side: the same signed POSTs, loop and concurrency, to the same
receiver. Why the delivery client is httpx over aiohttp's transport, called directly."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from streams.core.payload import webhook_body
from streams.core.signing import sign
from streams.core.timeutil import iso_from_ms
from streams.delivery.client import DeliveryClient
from streams.settings import Settings
from streams.subscriptions.commands import generate_secret

#: Requests in flight, for the bare clients and the workers' measured limit alike.
CONCURRENCY = 200

Post = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


async def _rate(post: Post, url: str, total: int, concurrency: int) -> float:
    secret = generate_secret()
    remaining = iter(range(total))

    async def sender() -> None:
        for n in remaining:
            body = webhook_body(f"evt_{n}", "task.created",
                                iso_from_ms(int(time.time() * 1000)), "wh_bare",
                                '{"id":"task"}')
            await post(url, body, {"Content-Type": "application/json",
                                   "X-Webhook-Signature": sign(body, secret)})

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return total / (time.monotonic() - started)


async def aiohttp_rate(url: str, total: int, concurrency: int) -> float:
    """Signed POSTs from a bare aiohttp loop: the machine's limit. Returns requests/s."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> None:
            async with s.post(url, data=body, headers=headers) as response:
                await response.read()
        return await _rate(post, url, total, concurrency)


async def _httpx(url: str, total: int, concurrency: int, transport: Any) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, transport=transport) as client:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> None:
            await client.post(url, content=body, headers=headers)
        return await _rate(post, url, total, concurrency)


async def _delivery_client(url: str, total: int, concurrency: int) -> float:
    client = DeliveryClient(Settings.from_env({
        "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1",
        "HOOKSTREAM_DELIVERY_CONCURRENCY": str(concurrency)}))
    try:
        async def post(url: str, body: bytes, headers: dict[str, str]) -> None:
            await client.post(url, body, headers, keep=200)
        return await _rate(post, url, total, concurrency)
    finally:
        await client.aclose()


def compare(total: int, concurrency: int, runs: int = 3) -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    receiver = subprocess.Popen([sys.executable, "-m", "localdev.bench.receiver", str(port)],
                                env=os.environ.copy())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/t"
        limits = httpx.Limits(max_connections=concurrency)
        clients: dict[str, Callable[[], Coroutine[Any, Any, float]]] = {
            "aiohttp": lambda: aiohttp_rate(url, total, concurrency),
            "httpx_default_transport": lambda: _httpx(url, total, concurrency, None),
            "httpx_client_over_aiohttp": lambda: _httpx(
                url, total, concurrency, AiohttpTransport(limits=limits)),
            "hookstream_delivery_client": lambda: _delivery_client(url, total, concurrency),
        }
        out: dict[str, Any] = {"scenario": "t http clients", "requests": total,
                               "concurrency": concurrency}
        for name, run in clients.items():
            rates = sorted(asyncio.run(run()) for _ in range(runs))
            out[f"{name}_per_s"] = round(rates[len(rates) // 2], 1)
        for name in list(clients)[1:]:
            out[f"{name}_vs_aiohttp"] = round(out[f"{name}_per_s"] / out["aiohttp_per_s"], 2)
        return out
    finally:
        receiver.terminate()
        receiver.wait(30)
