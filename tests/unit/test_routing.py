"""streams.delivery.routing: where a job goes after an attempt, or instead of one."""

from __future__ import annotations

import math
from dataclasses import replace
from email.utils import formatdate

from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.delivery.models import (
    ATTEMPTS_EXHAUSTED,
    DEAD,
    DISABLED,
    GONE,
    MAX_ATTEMPTS,
    RETRYING,
    SUCCESS,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    Outcome,
    delivery_id_for,
    requested_wait,
)
from streams.delivery.routing import (
    DUE_AT_HEADER,
    after_attempt,
    deferred,
    latest_due,
    repark,
    undeliverable,
    verdict,
)
from streams.delivery.stage import hold_until
from streams.kafka.topics import DELIVERY_LOG, DLQ, RETRY_TOPICS
from streams.pipeline.records import Origin

T0 = 1_760_437_800_000
DELAYS = (60.0, 300.0, 1800.0)
ORIGIN = Origin("p.hookstream.deliveries", 2, 41)
JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
    event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json='{"id":"task_1"}', attempt=1, created_at=T0)


def _failed(attempt: int) -> Outcome:
    return Outcome(attempt, T0 + 1000, 503, 250, "HTTP 503")


def test_a_success_is_logged_only() -> None:
    [log] = after_attempt(JOB, Outcome(1, T0, 200, 12, None), DELAYS, ORIGIN)
    assert (log.topic, log.key) == (DELIVERY_LOG, "wh_1")
    assert AttemptRecord.decode(log.value).status == SUCCESS


def test_a_failure_goes_to_the_next_retry_topic_due_after_its_delay() -> None:
    retry, log = after_attempt(JOB, _failed(1), DELAYS, ORIGIN)
    due = T0 + 1000 + 250 + 60_000
    assert (retry.topic, retry.key) == (RETRY_TOPICS[0], "wh_1")
    assert retry.headers == ((DUE_AT_HEADER, str(due).encode()),)
    again = DeliveryJob.decode(retry.value)
    assert (again.attempt, again.due_at, again.delivery_id) == (2, due, JOB.delivery_id)
    assert [o.response_code for o in again.outcomes] == [503]
    record = AttemptRecord.decode(log.value)
    assert (record.status, record.next_attempt_at) == (RETRYING, due)


def test_the_third_retry_uses_the_last_topic_and_the_fourth_failure_is_dead() -> None:
    third = DeliveryJob(**{**JOB.__dict__, "attempt": 3})
    retry, _ = after_attempt(third, _failed(3), DELAYS, ORIGIN)
    assert retry.topic == RETRY_TOPICS[2]
    last = DeliveryJob(**{**JOB.__dict__, "attempt": 4,
                          "outcomes": tuple(_failed(n) for n in (1, 2, 3))})
    dead, log = after_attempt(last, _failed(4), DELAYS, ORIGIN)
    assert dead.topic == DLQ
    letter = DeadLetter.decode(dead.value)
    assert (letter.reason, len(letter.job.outcomes)) == (ATTEMPTS_EXHAUSTED, 4)
    assert (b"hookstream-last-offset", b"41") in [(k.encode(), v) for k, v in dead.headers]
    assert AttemptRecord.decode(log.value).status == DEAD


def test_a_deferred_job_is_parked_unattempted_in_due_order() -> None:
    [parked] = deferred(JOB, DELAYS, T0)
    assert (parked.topic, parked.key) == (RETRY_TOPICS[0], "wh_1")
    assert parked.headers == ((DUE_AT_HEADER, str(T0 + 60_000).encode()),)
    job = DeliveryJob.decode(parked.value)
    # Same attempt, same id, no outcome: deferring is not a failure.
    assert (job.attempt, job.delivery_id, job.outcomes) == (1, JOB.delivery_id, ())
    assert job.due_at == T0 + 60_000


def test_a_disabled_webhooks_job_is_dead_lettered_unattempted() -> None:
    dead, log = undeliverable(JOB, WEBHOOK_DISABLED, ORIGIN, T0)
    assert DeadLetter.decode(dead.value).reason == WEBHOOK_DISABLED
    record = AttemptRecord.decode(log.value)
    assert (record.status, record.response_code) == (DISABLED, None)


@given(attempt=st.integers(1, 6), ok=st.booleans(),
       delays=st.tuples(*[st.floats(0, 3600)] * len(RETRY_TOPICS)))
def test_the_verdict_counted_is_the_route_taken(attempt: int, ok: bool,
                                                delays: tuple[float, ...]) -> None:
    """The worker's metrics count `verdict`; the records written follow `after_attempt`:
    one rule, so a retry is never counted as a dead letter or the other way round."""
    job = replace(JOB, attempt=attempt)
    outcome = Outcome(attempt, T0, 200 if ok else 503, 5, None if ok else "HTTP 503")
    produced = after_attempt(job, outcome, delays, ORIGIN)
    logged = AttemptRecord.decode(produced[-1].value).status
    topics = {p.topic for p in produced}
    status = verdict(job, outcome, delays)
    assert status == logged
    assert (status == RETRYING) == bool(topics & set(RETRY_TOPICS))
    assert (status == DEAD) == (DLQ in topics)


# -- Retry-After and 410 Gone --------------------------------------------------------------
FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True)
LADDERS = st.tuples(*[st.floats(0, 3600)] * len(RETRY_TOPICS))
#: What a receiver may put in Retry-After: seconds of any size, dates around the attempt
#: in the forms RFC 9110 names, and anything at all.
RETRY_AFTER = st.one_of(
    st.none(), st.integers(0, 10**15).map(str), st.text(max_size=40),
    st.integers(-86_400, 10 * 86_400).map(lambda s: formatdate(T0 / 1000 + s, usegmt=True)))


def _tried(attempt: int) -> tuple[Outcome, ...]:
    return tuple(Outcome(n, T0 - 10_000 * n, 503, 5, "HTTP 503") for n in range(1, attempt))


def _answered(status: int, retry_after: str | None, attempt: int,
              elapsed_ms: int) -> Outcome:
    """An attempt at T0 answered `elapsed_ms` later, as the sender makes it."""
    wait = requested_wait(status, retry_after, (T0 + elapsed_ms) / 1000)
    error = None if 200 <= status < 300 else f"HTTP {status}"
    return Outcome(attempt, T0, status, elapsed_ms, error, wait)


@FAST
@given(status=st.integers(100, 599), attempt=st.integers(1, MAX_ATTEMPTS),
       retry_after=RETRY_AFTER, delays=LADDERS, elapsed_ms=st.integers(0, 30_000))
def test_a_retry_is_due_no_sooner_than_the_ladder_and_no_later_than_the_cap(
        status: int, attempt: int, retry_after: str | None, delays: tuple[float, ...],
        elapsed_ms: int) -> None:
    job = replace(JOB, attempt=attempt, outcomes=_tried(attempt))
    outcome = _answered(status, retry_after, attempt, elapsed_ms)
    produced = after_attempt(job, outcome, delays, ORIGIN)
    retries = [p for p in produced if p.topic in RETRY_TOPICS]
    if outcome.ok or status == 410 or attempt == MAX_ATTEMPTS:
        assert retries == []
        if status == 410:
            (dead,) = [p for p in produced if p.topic == DLQ]
            assert DeadLetter.decode(dead.value).reason == GONE
        return
    (retry,) = retries
    rung = attempt - 1
    assert retry.topic == RETRY_TOPICS[rung]
    due = int(dict(retry.headers)[DUE_AT_HEADER])
    answered = T0 + elapsed_ms
    following = delays[rung + 1] if rung + 1 < len(delays) else delays[rung]
    ladder = answered + int(delays[rung] * 1000)
    cap = answered + int((delays[rung] + following) * 1000)
    assert ladder <= due <= cap
    if status not in (429, 503):
        assert due == ladder
    again = DeliveryJob.decode(retry.value)
    assert again.attempt == attempt + 1 <= MAX_ATTEMPTS
    assert again.due_at == due == AttemptRecord.decode(produced[-1].value).next_attempt_at
    assert latest_due(again, delays) == cap


def _read(value: bytes, headers: tuple[tuple[str, bytes], ...],
          appended: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="p.hookstream.retry", partition=0, offset=0,
                          timestamp=appended, timestamp_type=1, key=b"wh_1", value=value,
                          checksum=None, serialized_key_size=4,
                          serialized_value_size=len(value), headers=list(headers))


def _walk(delays: tuple[float, ...], rung: int, retry_after: float | None,
          latency_ms: int) -> tuple[int, int, int]:
    """A retry's way through the retry topics, each leg read when the stage's hold ends and
    parked again while not due, with nothing else on the partitions: (its due time, when
    it is attempted, legs parked again). Checks every leg is held in due order."""
    job = replace(JOB, attempt=rung + 1, outcomes=_tried(rung + 1))
    retry, _ = after_attempt(job, Outcome(rung + 1, T0, 429, 0, "HTTP 429", retry_after),
                             delays, ORIGIN)
    due = int(dict(retry.headers)[DUE_AT_HEADER])
    leg, appended, legs = retry, T0 + latency_ms, 0
    while True:
        delay = delays[RETRY_TOPICS.index(leg.topic)]
        record = _read(leg.value, leg.headers, appended)
        at = max(hold_until(record, delay, appended), appended)
        # In due order: no leg is held past its topic's delay, so nobody behind it waits.
        assert at <= appended + int(delay * 1000)
        parked = repark(DeliveryJob.decode(leg.value), due, delays, at)
        if not parked:
            return due, at, legs
        # Parked again only once held its topic's whole delay.
        assert at == appended + int(delay * 1000)
        (leg,) = parked
        assert dict(leg.headers)[DUE_AT_HEADER] == str(due).encode()
        assert DeliveryJob.decode(leg.value).attempt == rung + 2
        appended, legs = at, legs + 1
        assert legs < 200


@FAST
@given(delays=LADDERS, rung=st.integers(0, len(RETRY_TOPICS) - 1),
       retry_after=st.none() | st.floats(0, 20_000), latency_ms=st.integers(0, 2_000))
def test_parked_again_and_again_a_retry_is_attempted_when_its_receiver_asked(
        delays: tuple[float, ...], rung: int, retry_after: float | None,
        latency_ms: int) -> None:
    """Exactly then: never before, and not later either while no other retry is queued
    ahead of it (the rest of the stage's hold rule, tests/unit/test_retry_hold.py)."""
    due, at, _ = _walk(delays, rung, retry_after, latency_ms)
    assert at == max(due, T0 + latency_ms)


def test_the_default_ladders_longest_waits_take_a_few_legs() -> None:
    legs = [_walk((60.0, 300.0, 1800.0), rung, math.inf, 5)[2] for rung in (0, 1, 2)]
    assert legs == [1, 1, 1]  # 60 + 300, 300 + 1800, 1800 + 1800: one more leg each
    # The worst: a wait just over a leg of 1800 s past the first, made of 300s and 60s.
    assert max(_walk((60.0, 300.0, 1800.0), 1, float(wait), 5)[2]
               for wait in range(300, 2101, 7)) <= 10


def test_a_due_time_past_the_cap_is_waited_only_to_the_cap() -> None:
    job = replace(JOB, attempt=2, outcomes=(Outcome(1, T0, 429, 100, "HTTP 429"),))
    cap = T0 + 100 + 360_000
    assert latest_due(job, DELAYS) == cap
    (parked,) = repark(job, cap + 10**9, DELAYS, T0 + 60_000)
    assert dict(parked.headers)[DUE_AT_HEADER] == str(cap).encode()
    assert repark(job, cap + 10**9, DELAYS, cap) == []
    assert repark(replace(job, attempt=1, outcomes=()), cap, DELAYS, T0) == []
    assert repark(job, cap, (0.0, 0.0, 0.0), T0) == []  # no topic holds: attempted now


def test_a_410_is_final_on_any_attempt() -> None:
    gone = Outcome(1, T0, 410, 5, "HTTP 410: gone")
    assert gone.gone and verdict(JOB, gone, DELAYS) == DEAD
    dead, log = after_attempt(JOB, gone, DELAYS, ORIGIN)
    assert dict(dead.headers)["hookstream-reason"] == GONE.encode()
    assert AttemptRecord.decode(log.value).status == DEAD
