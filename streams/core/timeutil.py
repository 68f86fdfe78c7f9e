"""Times on the wire: ISO 8601 strings for humans, epoch milliseconds for machines."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
#: The epoch milliseconds a datetime can hold (years 1 to 9999): what fastavro accepts for
#: a timestamp-millis, and what iso_from_ms can show.
MIN_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MS
MAX_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MS


def now_ms() -> int:
    return int(time.time() * 1000)


def to_ms(value: object) -> int:
    """Epoch ms from what fastavro gives for a timestamp-millis field (datetime or int);
    OverflowError outside what a datetime can hold, as fastavro raises reading one."""
    if isinstance(value, datetime):
        # Exactly, in integers: value.timestamp() * 1000 is a float, and 1.001 s came
        # back as 1000 ms (so a job's created_at changed across a round trip).
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _MS
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_MS <= value <= MAX_MS:
            raise OverflowError(f"timestamp {value} ms is outside years 1 to 9999")
        return value
    raise TypeError(f"not a timestamp: {value!r}")


def iso_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 time with a zone (`Z` or an offset); naive times are refused."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if parsed.tzinfo is None:
        raise ValueError("time has no zone; add Z or an offset")
    return parsed
