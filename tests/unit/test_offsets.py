"""streams.pipeline.offsets: the committable offset while jobs finish out of order."""

from __future__ import annotations

import random

import pytest

from streams.pipeline.offsets import OffsetTracker


def test_fresh_tracker() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() is None
    assert len(tracker) == 0
    assert tracker.committed is None


def test_in_flight_then_done() -> None:
    tracker = OffsetTracker()
    tracker.started(5)
    assert tracker.committable() == 5
    assert len(tracker) == 1
    tracker.done(5)
    assert tracker.committable() == 6
    assert len(tracker) == 0


def test_out_of_order_completion_never_passes_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.started(offset)
    tracker.done(13)
    assert tracker.committable() == 10
    tracker.done(11)
    assert tracker.committable() == 10
    tracker.done(10)
    assert tracker.committable() == 12
    tracker.done(12)
    assert tracker.committable() == 14


def test_gaps_in_offsets() -> None:
    tracker = OffsetTracker()
    tracker.started(3)
    tracker.started(7)  # 4..6 were compacted away or transaction markers
    tracker.done(3)
    assert tracker.committable() == 7
    tracker.done(7)
    assert tracker.committable() == 8


def test_committed_guard() -> None:
    tracker = OffsetTracker()
    tracker.started(0)
    tracker.done(0)
    assert tracker.committable() == 1
    tracker.committed = 1
    assert tracker.committable() is None
    tracker.started(1)
    assert tracker.committable() is None  # 1 would not advance past the commit
    tracker.started(2)
    tracker.done(1)
    assert tracker.committable() == 2
    tracker.committed = 2
    assert tracker.committable() is None
    tracker.done(2)
    assert tracker.committable() == 3


def test_done_of_unknown_offset_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.done(3)
    assert tracker.committable() is None
    tracker.started(4)
    tracker.done(99)
    tracker.done(4)
    tracker.done(4)
    assert tracker.committable() == 5
    assert len(tracker) == 0


def test_restart_of_a_finished_offset() -> None:
    tracker = OffsetTracker()
    for offset in (1, 2, 3):
        tracker.started(offset)
    tracker.done(2)
    tracker.started(2)  # redelivered after a rebalance
    tracker.done(1)
    assert tracker.committable() == 2
    tracker.done(2)
    assert tracker.committable() == 3
    tracker.done(3)
    assert tracker.committable() == 4


class Model:
    """Brute force: the lowest in-flight offset, else one past the highest ever started."""

    def __init__(self) -> None:
        self.in_flight: set[int] = set()
        self.highest: int | None = None
        self.committed: int | None = None

    def started(self, offset: int) -> None:
        self.in_flight.add(offset)
        self.highest = offset if self.highest is None else max(self.highest, offset)

    def done(self, offset: int) -> None:
        self.in_flight.discard(offset)

    def committable(self) -> int | None:
        if self.highest is None:
            return None
        offset = min(self.in_flight) if self.in_flight else self.highest + 1
        if self.committed is not None and offset <= self.committed:
            return None
        return offset


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7, 42, 1234, 99991])
def test_matches_brute_force_model(seed: int) -> None:
    rng = random.Random(seed)
    tracker, model = OffsetTracker(), Model()
    next_offset = rng.randrange(0, 1000)
    for _ in range(600):
        roll = rng.random()
        if roll < 0.40:
            tracker.started(next_offset)
            model.started(next_offset)
            next_offset += rng.choice((1, 1, 1, 2, 5))
        elif roll < 0.75 and model.in_flight:
            offset = rng.choice(sorted(model.in_flight))
            tracker.done(offset)
            model.done(offset)
        elif roll < 0.85:
            now = tracker.committable()
            assert now == model.committable()
            if now is not None:
                assert model.committed is None or now > model.committed
                model.committed = now
                tracker.committed = now
        elif roll < 0.92 and model.highest is not None:
            # Redelivery of an offset already read (rebalance, seek back).
            offset = rng.randrange(max(0, model.highest - 20), model.highest + 1)
            tracker.started(offset)
            model.started(offset)
        else:
            offset = rng.randrange(0, next_offset + 10)  # a stray or duplicate done
            tracker.done(offset)
            model.done(offset)

        assert len(tracker) == len(model.in_flight)
        committable = tracker.committable()
        assert committable == model.committable()
        if committable is not None and model.in_flight:
            assert committable <= min(model.in_flight)  # never skips unfinished work

    for offset in sorted(model.in_flight, reverse=True):
        tracker.done(offset)
        model.done(offset)
    assert len(tracker) == 0
    assert model.highest is not None
    expected = model.highest + 1
    assert tracker.committable() == (
        expected if model.committed is None or expected > model.committed else None
    )
