"""What a fault did to a steady run, from the receiver's timeline: 1-s delivery rates, the
dip, the time to recover, when the backlog was drained, duplicates by delivery id. Pure.

Every figure counts first receipts of the (event, webhook) pairs the load asked for: a
pair's delivery id (`X-Webhook-Delivery`) received a second time is a duplicate, not
more throughput.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

#: The rate is back when it is at least this share of the rate before the fault...
RECOVERED_SHARE = 0.9
#: ...for this many 1-s buckets in a row.
RECOVERED_FOR = 3
#: Grid (s) on which the backlog is sampled.
BACKLOG_STEP = 0.1


@dataclass(frozen=True)
class Receipts:
    """The receiver's view of the pairs asked for: when each delivery id first arrived,
    and how many times each arrived."""

    first: dict[str, float]
    counts: Counter[str]

    @classmethod
    def of(cls, rows: Iterable[tuple[float, str]], expected: dict[str, float]) -> Receipts:
        first: dict[str, float] = {}
        counts: Counter[str] = Counter()
        for at, delivery_id in sorted(rows):
            if delivery_id in expected:
                counts[delivery_id] += 1
                first.setdefault(delivery_id, at)
        return cls(first, counts)

    def lost(self, expected: dict[str, float]) -> int:
        return sum(1 for d in expected if d not in self.first)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values())

    def duplicated(self) -> list[str]:
        return [d for d, n in self.counts.items() if n > 1]


def rates(times: list[float], start: float, end: float) -> list[int]:
    """First receipts in each whole second from `start` until `end` (sorted `times`)."""
    out = []
    at = start
    while at + 1 <= end:
        out.append(bisect.bisect_left(times, at + 1) - bisect.bisect_left(times, at))
        at += 1
    return out


def mean_rate(times: list[float], start: float, end: float) -> float:
    return (bisect.bisect_left(times, end) - bisect.bisect_left(times, start)) / (end - start)


def dip(times: list[float], before: float, start: float, end: float) -> tuple[float, int]:
    """(lowest 1-s rate from `start` to `end` / the rate `before`, the second it fell in,
    counted from `start`)."""
    buckets = rates(times, start, end)
    if not buckets or before <= 0:
        return float("nan"), -1
    low = min(range(len(buckets)), key=buckets.__getitem__)
    return buckets[low] / before, low


def recovered_after(times: list[float], before: float, start: float,
                    end: float) -> float | None:
    """Seconds from `start` to the first 1-s bucket, at or after the lowest one, from which
    the rate stays at least RECOVERED_SHARE of `before` for RECOVERED_FOR seconds; None if
    it did not by `end`."""
    buckets = rates(times, start, end)
    if not buckets:
        return None
    low = min(range(len(buckets)), key=buckets.__getitem__)
    for k in range(low, len(buckets) - RECOVERED_FOR + 1):
        if all(b >= RECOVERED_SHARE * before for b in buckets[k:k + RECOVERED_FOR]):
            return float(k)
    return None


def drained_after(published: list[float], received: list[float], baseline_from: float,
                  start: float, end: float) -> float | None:
    """Seconds from `start` until the backlog (pairs published minus pairs received, both
    sorted times) is back to its highest level in the steady run from `baseline_from` to
    `start`, after its peak; None if it was not by `end`."""
    def backlog(at: float) -> int:
        return bisect.bisect_right(published, at) - bisect.bisect_right(received, at)

    def grid(a: float, b: float) -> list[float]:
        return [a + i * BACKLOG_STEP for i in range(int((b - a) / BACKLOG_STEP) + 1)]

    steady = max((backlog(t) for t in grid(baseline_from, start)), default=0)
    after = [(t, backlog(t)) for t in grid(start, end)]
    if not after:
        return None
    peak = max(range(len(after)), key=lambda i: after[i][1])
    for t, level in after[peak:]:
        if level <= steady:
            return round(t - start, 1)
    return None
