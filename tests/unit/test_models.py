"""streams.delivery.models: delivery jobs, attempt records and outcomes."""

from __future__ import annotations

import re

import pytest

from streams.delivery.models import (
    DEAD,
    RETRYING,
    SUCCESS,
    AttemptRecord,
    DeliveryJob,
    Outcome,
    delivery_id_for,
)
from streams.schemas import SchemaError

T0 = 1_760_437_800_123


def _job(**overrides: object) -> DeliveryJob:
    base = DeliveryJob(
        delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
        event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
        data_json='{"id":"task_789","name":"Café"}', attempt=1, created_at=T0,
    )
    fields = {**base.__dict__, **overrides}
    return DeliveryJob(**fields)


OUTCOMES = (
    Outcome(1, T0 + 10, 503, 120, "HTTP 503: busy"),
    Outcome(2, T0 + 60_010, None, 10_000, "timed out after 10s"),
)


@pytest.mark.parametrize(
    "job",
    [
        _job(),
        _job(attempt=3, due_at=T0 + 300_000, source_topic="domain.task", source_partition=5,
             source_offset=2**45, outcomes=OUTCOMES),
        _job(created_at=0, data_json="{}"),
    ],
)
def test_job_round_trip(job: DeliveryJob) -> None:
    payload = job.encode()
    assert payload[:2] == b"\xc3\x01"
    assert DeliveryJob.decode(payload) == job


def test_job_round_trip_keeps_every_millisecond() -> None:
    for ms in range(T0, T0 + 1000, 7):
        job = _job(created_at=ms, due_at=ms + 1, outcomes=(Outcome(1, ms, 200, 1, None),))
        assert DeliveryJob.decode(job.encode()) == job


def test_job_decode_rejects_other_bytes() -> None:
    record = AttemptRecord.of(_job(), OUTCOMES[0], RETRYING)
    with pytest.raises(SchemaError):
        DeliveryJob.decode(record.encode())
    with pytest.raises(SchemaError):
        DeliveryJob.decode(_job().encode()[:-2])


@pytest.mark.parametrize(
    "record",
    [
        AttemptRecord.of(_job(), Outcome(1, T0, 200, 45, None), SUCCESS),
        AttemptRecord.of(_job(attempt=2), OUTCOMES[0], RETRYING, next_attempt_at=T0 + 300_000),
        AttemptRecord.of(_job(attempt=4), OUTCOMES[1], DEAD),
        AttemptRecord("dlv_x", "wh", "ws", "user.added", "evt", 1, RETRYING, 404, 3, "HTTP 404",
                      0, None),
    ],
)
def test_attempt_record_round_trip(record: AttemptRecord) -> None:
    assert AttemptRecord.decode(record.encode()) == record


def test_attempt_record_of() -> None:
    job = _job(attempt=2)
    outcome = OUTCOMES[0]
    record = AttemptRecord.of(job, outcome, RETRYING, next_attempt_at=T0 + 1)
    assert record == AttemptRecord(
        delivery_id=job.delivery_id, webhook_id="wh_1", workspace_id="ws_1",
        event_type="task.created", event_id="evt_1", attempt=1, status=RETRYING,
        response_code=503, response_time_ms=120, error="HTTP 503: busy", attempted_at=T0 + 10,
        next_attempt_at=T0 + 1,
    )


def test_delivery_id_is_deterministic() -> None:
    first = delivery_id_for("evt_1", "wh_1")
    assert first == delivery_id_for("evt_1", "wh_1")
    assert re.fullmatch(r"dlv_[0-9a-f]{24}", first)


def test_delivery_id_is_distinct_per_pair() -> None:
    pairs = [("evt_1", "wh_1"), ("evt_1", "wh_2"), ("evt_2", "wh_1"), ("wh_1", "evt_1"),
             ("evt_1wh", "_1"), ("evt_", "1wh_1"), ("", "evt_1wh_1")]
    ids = {delivery_id_for(e, w) for e, w in pairs}
    assert len(ids) == len(pairs)
    many = {delivery_id_for(f"evt_{i}", f"wh_{j}") for i in range(40) for j in range(25)}
    assert len(many) == 1000


@pytest.mark.parametrize(
    ("code", "error", "ok"),
    [
        (200, None, True), (201, None, True), (204, None, True), (299, None, True),
        (199, None, False), (300, None, False), (302, None, False), (304, None, False),
        (404, None, False), (410, None, False), (429, None, False), (500, None, False),
        (503, None, False), (None, None, False), (None, "timed out after 10s", False),
        (200, "something went wrong", False),
    ],
)
def test_outcome_ok(code: int | None, error: str | None, ok: bool) -> None:
    assert Outcome(1, T0, code, 5, error).ok is ok


def test_outcome_record_round_trip() -> None:
    for outcome in OUTCOMES:
        assert Outcome.from_record(outcome.to_record()) == outcome
