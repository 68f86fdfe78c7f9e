"""streams.kafka.compacted.ExpiringView: entries leave memory when they expire, not only
when retention deletes them (the API's stored Idempotency-Key answers, the console's
sign-outs)."""

from __future__ import annotations

import json
from typing import Any

from aiokafka import ConsumerRecord

from streams.api import IDEMPOTENCY_TTL_MS, _answered_at
from streams.kafka.compacted import ExpiringView

NOW = 1_796_000_000_000


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _record(offset: int, key: str, at: int) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps({"status": 201, "sealed": "x", "at": at}).encode()
    return ConsumerRecord("t", 0, offset, at, 0, key.encode(), value, None, 0, len(value), ())


def _answers(clock: _Clock) -> ExpiringView[dict[str, Any]]:
    return ExpiringView("127.0.0.1:9", "t", json.loads, _answered_at, clock)


def test_expired_answers_are_evicted_not_only_hidden() -> None:
    clock = _Clock()
    view = _answers(clock)
    for n in range(1000):
        view._put(_record(n, f"old-{n}", NOW - IDEMPOTENCY_TTL_MS - 10_000 + n))
    view._put(_record(1000, "fresh", NOW))
    assert list(view.current) == ["fresh"]
    assert view.get("fresh") is not None and view.get("old-999") is None


def test_answers_within_a_day_are_kept_and_found() -> None:
    clock = _Clock()
    view = _answers(clock)
    for n in range(10):
        view._put(_record(n, f"k{n}", NOW - IDEMPOTENCY_TTL_MS // 2 + n))
    assert len(view.current) == 10
    assert view.get("k3") is not None
    clock.now = NOW + IDEMPOTENCY_TTL_MS
    assert view.get("k3") is None
    assert len(view.current) == 0


def test_a_key_written_again_moves_to_the_back() -> None:
    clock = _Clock()
    view = _answers(clock)
    view._put(_record(0, "a", NOW - IDEMPOTENCY_TTL_MS + 5_000))
    view._put(_record(1, "b", NOW - IDEMPOTENCY_TTL_MS + 6_000))
    view._put(_record(2, "a", NOW))
    view.evict(NOW + 6_000)
    assert list(view.current) == ["a"]


def test_an_entry_expiring_later_behind_an_earlier_one_waits_its_turn() -> None:
    """Eviction looks only at the front: later entries leave once those before them did,
    which bounds memory by the longest life, never by all entries ever seen."""
    clock = _Clock()
    view: ExpiringView[int] = ExpiringView("127.0.0.1:9", "t", lambda v: int(v), lambda ms: ms,
                                           clock)
    view._put(ConsumerRecord("t", 0, 0, NOW, 0, b"late", str(NOW + 100).encode(), None, 0, 0, ()))
    view._put(ConsumerRecord("t", 0, 1, NOW, 0, b"soon", str(NOW + 10).encode(), None, 0, 0, ()))
    clock.now = NOW + 50
    view.evict(clock.now)
    assert list(view.current) == ["late", "soon"]
    assert view.get("soon") is None  # expired, even while still in memory
    clock.now = NOW + 100
    view.evict(clock.now)
    assert list(view.current) == []
