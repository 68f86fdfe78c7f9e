"""streams.runtime.views.IdempotencyView: stored answers leave memory when they expire."""

from __future__ import annotations

import json

from aiokafka import ConsumerRecord

from streams.core.timeutil import now_ms
from streams.runtime.views import IDEMPOTENCY_TTL_MS, IdempotencyView


def _record(offset: int, key: str, at: int) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps({"status": 201, "sealed": "x", "at": at}).encode()
    return ConsumerRecord("t", 0, offset, at, 0, key.encode(), value, None, 0, len(value), ())


def test_expired_answers_are_evicted_not_only_hidden() -> None:
    view = IdempotencyView()
    now = now_ms()
    for n in range(1000):
        view._put(_record(n, f"old-{n}", now - IDEMPOTENCY_TTL_MS - 10_000 + n))
    view._put(_record(1000, "fresh", now))
    assert list(view.current) == ["fresh"]
    assert view.get("fresh") is not None and view.get("old-999") is None


def test_answers_within_a_day_are_kept_and_found() -> None:
    view = IdempotencyView()
    now = now_ms()
    for n in range(10):
        view._put(_record(n, f"k{n}", now - IDEMPOTENCY_TTL_MS // 2 + n))
    assert len(view.current) == 10
    assert view.get("k3") is not None
    view.evict(now + IDEMPOTENCY_TTL_MS)
    assert len(view.current) == 0


def test_a_key_written_again_moves_to_the_back() -> None:
    view = IdempotencyView()
    now = now_ms()
    view._put(_record(0, "a", now - IDEMPOTENCY_TTL_MS + 5_000))
    view._put(_record(1, "b", now - IDEMPOTENCY_TTL_MS + 6_000))
    view._put(_record(2, "a", now))
    view.evict(now + 6_500)
    assert list(view.current) == ["a"]
