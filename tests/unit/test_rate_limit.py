"""Per-webhook rate limits (streams.delivery.ratelimit), alone and in the delivery stage:
sends of a limited webhook are spaced 1/N s apart (so no second holds more than N), the
excess waits and is never dropped, a job whose turn is too far off is parked unattempted,
and other webhooks are not slowed. The stage runs in virtual time on the in-memory broker."""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import replace
from itertools import pairwise
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.delivery import ratelimit
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.ratelimit import RateLimiter
from streams.delivery.stage import DeliveryWorker
from streams.kafka.topics import DELIVERIES, RETRY_TOPICS, all_topics
from streams.pipeline.local import LocalBroker
from streams.pipeline.records import Origin

from .test_delivery_stage import BOX, SETTINGS, SUB, _record, _view
from .test_stage_loop import now, run

EPSILON = 1e-9


@given(st.integers(1, 50), st.lists(st.floats(0, 5), min_size=1, max_size=80))
def test_reserved_turns_are_spaced_and_never_before_they_are_asked(
        rate: int, gaps: list[float]) -> None:
    limiter = RateLimiter()
    asked, starts = 0.0, []
    for gap in gaps:
        asked += gap / 10
        starts.append((asked, asked + limiter.reserve("wh", rate, asked)))
    assert all(start >= when for when, start in starts)
    assert all(b - a >= 1 / rate - EPSILON for (_, a), (_, b) in pairwise(starts))
    # Hence any second holds at most `rate` starts (one more on its edge).
    times = [start for _, start in starts]
    assert all(sum(1 for t in times if edge <= t < edge + 1) <= rate + 1 for edge in times)


@given(st.integers(1, 50), st.lists(st.floats(0, 5), min_size=1, max_size=80))
def test_sends_are_spaced_however_late_their_turns_bunch_up(rate: int,
                                                            gaps: list[float]) -> None:
    """Turns that passed while their jobs waited for slots arrive together: `space` keeps
    the sends 1/rate apart anyway."""
    limiter = RateLimiter()
    now, starts = 0.0, []
    for gap in gaps:
        now += gap / 100  # many arrive at once
        starts.append(now + limiter.space("wh", rate, now))
    assert all(b - a >= 1 / rate - EPSILON for a, b in pairwise(starts))


@given(st.integers(1, 50), st.lists(st.tuples(st.floats(0, 5), st.floats(0, 2)), min_size=1,
                                   max_size=60))
def test_sends_woken_late_together_still_start_spaced(
        rate: int, arrivals: list[tuple[float, float]]) -> None:
    """A busy loop wakes sends later than `space` asked, several at once: `begin` lets them
    start 1/rate apart anyway (within a millisecond), so no second holds more than rate + 1
    starts, and each starts as soon as that allows."""
    limiter = RateLimiter()
    now, woken = 0.0, []
    for gap, late in arrivals:
        now += gap / 100
        woken.append(now + limiter.space("wh", rate, now) + late)  # the loop was late
    pending, starts = sorted(woken), []
    while pending:
        at = heapq.heappop(pending)
        again = limiter.begin("wh", rate, at)
        if again > 0:
            heapq.heappush(pending, at + again)
        else:
            starts.append(at)
    assert len(starts) == len(woken)
    assert all(b - a >= 1 / rate - 0.001 - EPSILON for a, b in pairwise(starts))
    assert all(sum(1 for t in starts if edge <= t < edge + 1) <= rate + 1 for edge in starts)


def test_webhooks_do_not_share_a_pace_and_waiting_does_not_reserve() -> None:
    limiter = RateLimiter()
    assert limiter.reserve("wh_a", 2, 10.0) == 0.0
    assert limiter.wait("wh_a", 2, 10.0) == 0.5
    assert limiter.wait("wh_a", 2, 10.0) == 0.5  # asking twice reserves nothing
    assert limiter.reserve("wh_b", 2, 10.0) == 0.0
    assert limiter.reserve("wh_a", 2, 10.0) == 0.5
    assert limiter.reserve("wh_a", 2, 20.0) == 0.0  # a quiet spell: at once


@pytest.mark.parametrize("take", ["reserve", "space"])
def test_past_prune_at_a_new_webhook_forgets_those_whose_turn_has_passed(
        take: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded, and a webhook still short of its next turn keeps it."""
    monkeypatch.setattr(ratelimit, "PRUNE_AT", 3)
    step = getattr(RateLimiter(), take)
    step("wh_slow", 0.1, 0.0)  # next turn at 10
    step("wh_a", 1, 0.0)
    step("wh_b", 1, 0.0)  # next turns at 1
    assert step("wh_new", 1, 5.0) == 0.0  # the fourth: wh_a's and wh_b's turns have passed
    assert step("wh_a", 1, 0.5) == 0.0  # forgotten (remembered, it would wait 0.5)
    assert step("wh_slow", 0.1, 5.0) == 5.0  # kept


def _job(webhook_id: str, n: int) -> DeliveryJob:
    return DeliveryJob(
        delivery_id=delivery_id_for(f"evt_{n}", webhook_id), webhook_id=webhook_id,
        workspace_id="ws_1", event_id=f"evt_{n}", event_type="task.created",
        event_timestamp="2025-10-14T10:30:00Z", data_json="{}", attempt=1, created_at=0)


def test_a_limited_webhook_is_paced_its_neighbour_is_not_and_the_excess_is_parked() -> None:
    limited = replace(SUB, rate_limit=20)
    neighbour = replace(SUB, id="wh_2")
    settings = replace(SETTINGS, defer_after=2.01, per_webhook_concurrency=100,
                       per_workspace_concurrency=200, delivery_concurrency=200)
    sent: dict[str, list[float]] = {"wh_1": [], "wh_2": []}
    loads: list[Any] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent[request.headers["X-Webhook-ID"]].append(now())
        return httpx.Response(200)

    async def main() -> list[list[object]]:
        broker = LocalBroker()
        broker.create_topics(all_topics(settings))
        worker = DeliveryWorker(settings, _view([limited, neighbour]), box=BOX,
                                transport=httpx.MockTransport(receiver),
                                consumer_factory=broker.consumer,
                                producer_factory=broker.producer, tail_factory=broker.tail)
        await worker.start()
        loads.append(worker._load)
        try:
            jobs = [_job("wh_1", n) for n in range(100)] + [_job("wh_2", n) for n in range(50)]
            records = [_record(settings.topic(DELIVERIES), job.encode(), offset=n)
                       for n, job in enumerate(jobs)]
            return list(await asyncio.gather(*(
                worker.handle(r, Origin(r.topic, 0, r.offset)) for r in records)))
        finally:
            await worker.stop()

    returned = run(main)
    # Every job finished or was parked: no webhook is still counted as loaded (a count
    # left behind would make the webhook look queued for ever, and defer all its jobs).
    assert "wh_1" not in loads[0] and "wh_2" not in loads[0]
    # The neighbour is not slowed: all its sends at once.
    assert len(sent["wh_2"]) == 50 and max(sent["wh_2"]) == min(sent["wh_2"])
    # The limited webhook: 1/20 s apart, for as long as defer_after allows (41 turns),
    assert all(b - a >= 0.05 - EPSILON for a, b in pairwise(sent["wh_1"]))
    assert len(sent["wh_1"]) == 41
    # and the rest parked unattempted on the first retry topic, nothing dropped.
    parked = [p for produced in returned for p in produced if p.topic == RETRY_TOPICS[0]]
    assert len(parked) == 100 - 41
    assert {DeliveryJob.decode(p.value).attempt for p in parked} == {1}
