"""A webhook receiver that verifies each signature and prints each delivery.

Run it with `python -m localdev.demo.receiver --port 8787 --secret whsec_...`; it is the
Python receiver code README shows, made runnable.
"""

from __future__ import annotations

import argparse
import json
import os

from aiohttp import web

from streams.core.signing import DELIVERY_HEADER, SIGNATURE_HEADER, verify


def make_app(secret: str) -> web.Application:
    seen: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()  # verify the exact bytes, before any parsing
        if not verify(body, request.headers.get(SIGNATURE_HEADER, ""), secret):
            print("REJECTED: bad signature", flush=True)
            return web.Response(status=401, text="invalid signature")
        delivery_id = request.headers.get(DELIVERY_HEADER, "")
        duplicate = delivery_id in seen  # the delivery id is the idempotency key
        seen.add(delivery_id)
        event = json.loads(body)
        print(f"{'DUPLICATE ' if duplicate else ''}verified {event['event']} "
              f"{event['id']} for webhook {event['webhook_id']} (delivery {delivery_id}): "
              f"{json.dumps(event['data'], ensure_ascii=False)}", flush=True)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET", ""))
    args = parser.parse_args()
    if not args.secret:
        parser.error("--secret (or WEBHOOK_SECRET) is required")
    web.run_app(make_app(args.secret), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
