"""streams.delivery.models: delivery jobs, attempt records and outcomes."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.core.schemas import SchemaError
from streams.delivery.models import (
    DEAD,
    MAX_ATTEMPT_RECORD_BYTES,
    MAX_ATTEMPTS,
    RETRYING,
    SUCCESS,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    InvalidJob,
    JobsOfEvent,
    Outcome,
    delivery_id_for,
)
from streams.delivery.routing import after_attempt, deferred, undeliverable
from streams.delivery.sender import build_request
from streams.kafka.topics import RETRY_TOPICS
from streams.pipeline.records import Origin
from streams.subscriptions.model import Subscription

from ..support import hostile

T0 = 1_760_437_800_123


def _job(**overrides: object) -> DeliveryJob:
    base = DeliveryJob(
        delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
        event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
        data_json='{"id":"task_789","name":"Café"}', attempt=1, created_at=T0,
    )
    fields = {**base.__dict__, **overrides}
    return DeliveryJob(**fields)


SUB = Subscription(id="wh_1", workspace_id="ws_1", url="https://example.com/h",
                   events=("*",), secret="whsec_models_test_secret", active=True,
                   created_at=T0, updated_at=T0)

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


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(ids=st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=5), shared=_TEXT,
       source=st.none() | st.tuples(_TEXT, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1)),
       created_at=st.integers(0, 253_402_300_799_999))
def test_jobs_of_an_event_are_the_bytes_each_job_encodes_to(
        ids: list[tuple[str, str]], shared: str, source: tuple[str, int, int] | None,
        created_at: int) -> None:
    """Differential: the fan-out's shortcut against fastavro encoding every job whole,
    whatever the ids' lengths (one- and two-byte varints) and characters."""
    topic, partition, offset = source or (None, None, None)
    jobs = [_job(delivery_id=delivery_id, webhook_id=webhook_id, workspace_id=shared,
                 event_id=shared, data_json=json.dumps(shared), created_at=created_at,
                 source_topic=topic, source_partition=partition, source_offset=offset)
            for delivery_id, webhook_id in ids]
    encoder = JobsOfEvent(jobs[-1])
    for job in jobs:
        assert encoder.encode(job.delivery_id, job.webhook_id) == job.encode()


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


# -- hostile and forged bytes ------------------------------------------------------------
@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile.hostile_bytes())
def test_decoders_raise_only_schema_error_whatever_the_bytes(payload: bytes) -> None:
    for decode in (DeliveryJob.decode, DeadLetter.decode, AttemptRecord.decode):
        try:
            decode(payload)
        except SchemaError as exc:
            assert str(exc)


@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile.hostile_bytes(), st.builds(
    lambda webhook, at, due: AttemptRecord("dlv_x", webhook, "ws", "user.added", "evt", 1,
                                           RETRYING, 404, 3, None, at, due).encode(),
    st.sampled_from(["", "wh_1", "wh é"]), st.integers(-2**62, 2**62),
    st.none() | st.integers(-2**62, 2**62))))
def test_the_feeders_check_refuses_what_decode_refuses(payload: bytes) -> None:
    """webhook_of (the history's feeder) against decode: the same records refused, with
    the same reason, and the same webhook of the others."""
    try:
        record = AttemptRecord.decode(payload)
    except SchemaError as refused:
        with pytest.raises(SchemaError) as also:
            AttemptRecord.webhook_of(payload)
        assert str(also.value) == str(refused)
    else:
        assert AttemptRecord.webhook_of(payload) == record.webhook_id


@pytest.mark.parametrize(
    ("forged", "fragment"),
    [
        ({"attempt": 0}, "'attempt'"),
        ({"attempt": -1}, "'attempt'"),
        ({"attempt": MAX_ATTEMPTS + 1}, "'attempt'"),
        ({"attempt": 2**31 - 1}, "'attempt'"),  # its retry would overflow Avro's int
        ({"delivery_id": ""}, "'delivery_id'"),
        ({"delivery_id": "dlv_1\r\nX-Evil: yes"}, "'delivery_id'"),
        ({"delivery_id": "d" * 257}, "'delivery_id'"),
        ({"webhook_id": ""}, "'webhook_id'"),
        ({"webhook_id": "wh 1"}, "'webhook_id'"),
        ({"event_type": "tâche.créée"}, "'event_type'"),
        ({"event_type": ""}, "'event_type'"),
        ({"workspace_id": ""}, "'workspace_id'"),
        ({"event_id": ""}, "'event_id'"),
        ({"event_timestamp": "yesterday"}, "'event_timestamp'"),
        ({"event_timestamp": "2025-10-14T10:30:00"}, "'event_timestamp'"),  # no zone
        ({"data_json": ""}, "'data_json'"),
        ({"data_json": "[1, 2]"}, "not a JSON object"),
        ({"data_json": "\"text\""}, "not a JSON object"),
        ({"data_json": "{"}, "'data_json'"),
        ({"data_json": '{"a":1},"webhook_id":{}'}, "'data_json'"),  # would forge body keys
        ({"data_json": '{"a":NaN}'}, "'data_json'"),
        ({"data_json": '{"a":' + "[" * 5000 + "]" * 5000 + "}"}, "'data_json'"),
    ],
)
def test_forged_jobs_that_decode_are_refused(forged: dict[str, object], fragment: str) -> None:
    payload = _job(**forged).encode()
    with pytest.raises(InvalidJob, match=fragment):
        DeliveryJob.decode(payload)
    letter = DeadLetter(_job(**forged), "attempts_exhausted", None, T0).encode()
    with pytest.raises(InvalidJob, match=fragment):
        DeadLetter.decode(letter)


def test_max_attempts_is_one_per_retry_topic_and_the_first() -> None:
    assert len(RETRY_TOPICS) + 1 == MAX_ATTEMPTS
    assert DeliveryJob.decode(_job(attempt=MAX_ATTEMPTS).encode()).attempt == MAX_ATTEMPTS


def test_invalid_job_is_a_schema_error() -> None:
    assert issubclass(InvalidJob, SchemaError)


def test_oversized_attempt_record_is_refused() -> None:
    record = AttemptRecord.of(_job(), Outcome(1, T0, 500, 3, "x" * MAX_ATTEMPT_RECORD_BYTES),
                              RETRYING)
    with pytest.raises(SchemaError, match="over"):
        AttemptRecord.decode(record.encode())


def test_attempt_record_without_webhook_is_refused() -> None:
    record = AttemptRecord("dlv_x", "", "ws", "user.added", "evt", 1, RETRYING, 404, 3,
                           "HTTP 404", 0, None)
    with pytest.raises(SchemaError, match="webhook_id"):
        AttemptRecord.decode(record.encode())


_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["", "wh_1", "task.created",
                                                          "dlv_1", "2025-10-14T10:30:00Z"]))
_DATA = st.one_of(
    st.text(max_size=40),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=8).map(lambda v: json.dumps(v, ensure_ascii=False)),
)


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(delivery_id=_TEXT, webhook_id=_TEXT, workspace_id=_TEXT, event_id=_TEXT,
       event_type=_TEXT, event_timestamp=_TEXT, data_json=_DATA,
       attempt=st.integers(-2**31, 2**31 - 1))
def test_a_job_that_decodes_can_be_sent_retried_and_dead_lettered(**fields: object) -> None:
    """What the delivery stage does with a job must not raise for any job decode accepts,
    and the body it sends must be one JSON object with the job's data."""
    try:
        payload = _job(**fields).encode()
    except SchemaError:
        assume(False)  # not even encodable (a lone surrogate): nobody can write it
    try:
        job = DeliveryJob.decode(payload)
    except SchemaError:
        return
    body, headers = build_request(SUB, job, T0 // 1000)
    httpx.Request("POST", SUB.url, content=body, headers=headers)  # raises on bad headers
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and list(parsed) == [
        "id", "event", "timestamp", "webhook_id", "data"]
    assert parsed["data"] == json.loads(job.data_json)
    origin = Origin("hookstream.deliveries", 0, 1)
    failed = Outcome(job.attempt, T0, 503, 5, "HTTP 503")
    produced = [*after_attempt(job, failed, (60.0, 300.0, 1800.0), origin),
                *after_attempt(job, Outcome(job.attempt, T0, 200, 5, None), (60.0,) * 3, origin),
                *undeliverable(job, "webhook_deleted", origin, T0),
                *deferred(job, (60.0, 300.0, 1800.0), T0)]
    for record in produced:
        record.key.encode()
        for _, value in record.headers:
            value.decode("ascii")
