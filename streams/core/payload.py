"""The webhook body, in the one byte form every receiver can re-create.

The documentation's receiver verifies HMAC(JSON.stringify(req.body)), i.e. it re-serializes
the parsed body. So we send exactly what JSON.stringify would produce: compact separators,
no ASCII escaping, key order kept, numbers in JavaScript's format. Then re-serializing yields
the identical bytes.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

#: Integers beyond this cannot survive JSON.parse in JavaScript (IEEE 754 doubles).
MAX_SAFE_INTEGER = 2**53 - 1
#: Objects and arrays nested deeper than this are refused: Ruby's JSON.parse refuses more
#: than 100 levels by default, so a receiver could not read such a body, and writing it
#: here recurses once per level, so the limit also keeps us far from Python's recursion
#: limit (1,000 frames, shared with whatever called us).
MAX_DEPTH = 100


class NotRepresentable(ValueError):
    """A value JSON.stringify could not reproduce byte for byte."""


def js_number(value: float) -> str:
    """ECMAScript Number::toString: shortest round-trip digits, JS's notation thresholds."""
    if not math.isfinite(value):
        raise NotRepresentable(f"{value} is not a JSON number")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    k = len(digits)
    # value = 0.digits x 10^n, in the spec's terms
    n = exponent + len(digit_tuple)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + (f".{digits[1:]}" if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


#: JSON.stringify's string escapes (none of them ASCII-only), in C; one encoder for every
#: string here. It lets a lone surrogate through, which UTF-8 then refuses (`_LONE`).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_LONE = "string holds a lone UTF-16 surrogate"


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotRepresentable(_LONE) from None
    return _ENCODER.encode(value)


def dumps(value: Any) -> str:
    """Compact JSON exactly as JavaScript's JSON.stringify writes it; raises NotRepresentable
    (also for containers nested more than MAX_DEPTH deep)."""
    return _dumps(value, MAX_DEPTH)


def _dumps(value: Any, depth_left: int) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise NotRepresentable(f"integer {value} is beyond 2^53; send it as a string")
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, dict | list | tuple) and depth_left <= 0:
        raise NotRepresentable(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotRepresentable(f"object key {key!r} is not a string")
            items.append(f"{_string(key)}:{_dumps(item, depth_left - 1)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(item, depth_left - 1) for item in value) + "]"
    raise NotRepresentable(f"{type(value).__name__} is not JSON")


def webhook_body(
    event_id: str, event_type: str, timestamp: str, webhook_id: str, data_json: str
) -> bytes:
    """`{"id","event","timestamp","webhook_id","data"}` as UTF-8 bytes.

    `data_json` is already canonical JSON (from the delivery job), spliced in as it is so
    the producer's key order survives.
    """
    # Four strings, written by `_string`'s encoder in one call (a fifth of `dumps`'s cost on
    # every attempt); a lone surrogate fails the body's UTF-8 encoding instead.
    head = _ENCODER.encode({"id": event_id, "event": event_type, "timestamp": timestamp,
                            "webhook_id": webhook_id})
    try:
        return f'{head[:-1]},"data":{data_json}}}'.encode()
    except UnicodeEncodeError:
        raise NotRepresentable(_LONE) from None
