"""streams.delivery.routing: where a job goes after an attempt, or instead of one."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from streams.delivery.models import (
    ATTEMPTS_EXHAUSTED,
    DEAD,
    DISABLED,
    RETRYING,
    SUCCESS,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    Outcome,
    delivery_id_for,
)
from streams.delivery.routing import (
    DUE_AT_HEADER,
    after_attempt,
    deferred,
    undeliverable,
    verdict,
)
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
