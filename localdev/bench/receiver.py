"""The benchmark's receiver: answers fast, counts, and keeps each request's latency.

Latency is receipt time minus the event's `timestamp`, which the harness sets at publish
time. Paths under /slow/ hang for HANG seconds (a receiver that times out). Each request's
`X-Webhook-Delivery` id is kept too (GET /deliveries), to count duplicates by delivery id.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime

from aiohttp import web

HANG_S = 30.0


def make_app() -> web.Application:
    received: list[tuple[float, float, str]] = []  # (receipt time, latency s, path)
    delivered: list[tuple[float, str]] = []  # (receipt time, X-Webhook-Delivery)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        if request.path.startswith("/slow/"):
            await asyncio.sleep(HANG_S)
            return web.Response(text="late")
        latency = float("nan")
        try:
            stamp = json.loads(body)["timestamp"]
            latency = now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            pass
        received.append((now, latency, request.path))
        delivered.append((now, request.headers.get("X-Webhook-Delivery", "")))
        return web.Response(text="OK")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"received": received})

    async def count(request: web.Request) -> web.Response:
        # Polled while waiting: answering with every row each time would steal the CPU
        # being measured.
        return web.json_response({"received": len(received)})

    async def deliveries(request: web.Request) -> web.Response:
        return web.json_response({"deliveries": delivered})

    async def reset(request: web.Request) -> web.Response:
        received.clear()
        delivered.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=2**20)
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count)
    app.router.add_get("/deliveries", deliveries)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None, backlog=4096)
