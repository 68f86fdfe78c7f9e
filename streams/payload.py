"""The webhook body, in the one byte form every receiver can re-create.

The documentation's receiver verifies HMAC(JSON.stringify(req.body)), i.e. it re-serializes
the parsed body. So we send exactly what JSON.stringify would produce: compact separators,
no ASCII escaping, key order kept. Then re-serializing yields the identical bytes.
"""

from __future__ import annotations

import json
from typing import Any


def _js_numbers(value: Any) -> Any:
    """JSON.stringify writes 1.0 as 1 (up to 1e21, where it switches to exponent form)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON as JavaScript's JSON.stringify writes it."""
    return json.dumps(
        _js_numbers(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def webhook_body(
    event_id: str, event_type: str, timestamp: str, webhook_id: str, data_json: str
) -> bytes:
    """`{"id","event","timestamp","webhook_id","data"}` as UTF-8 bytes.

    `data_json` is already compact JSON (from the delivery job), spliced in as it is so the
    producer's key order survives.
    """
    head = dumps({"id": event_id, "event": event_type, "timestamp": timestamp,
                  "webhook_id": webhook_id})
    return f'{head[:-1]},"data":{data_json}}}'.encode()
