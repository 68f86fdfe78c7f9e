"""JSON as every topic of ours accepts it: RFC 8259 text, nothing Python adds. Pure.

Python's json reads `NaN`, `Infinity` and `-Infinity`, which no other JSON parser does: a
record carrying one would be accepted here and then break whoever reads what we wrote
(the receiver of a webhook body, say). So they are refused, in one place.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder: json.loads with an argument builds a new one per call (about 4x the cost).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(text: str) -> Any:
    """The value of `text`; ValueError (or RecursionError, nested too deep) if it is not JSON."""
    return _DECODER.decode(text)


def loads_bytes(payload: bytes) -> Any:
    """The value of `payload`, read as json.loads reads bytes (UTF-8, or UTF-16/32 by their
    first bytes); UnicodeDecodeError, ValueError or RecursionError if it is not JSON."""
    return _DECODER.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
