"""Operational events: the failure counter's rule (streams.delivery.failing), the records a
failing webhook makes (streams.delivery.operations, streams.core.operational), and their
events' validation, Avro round trip and stable ids."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from streams.core import catalog, operational
from streams.core.events import InvalidEvent, decode_event, validate_event
from streams.core.schemas import EVENT, OPERATIONAL_EVENT, Registry, registry, schemas_dir
from streams.delivery import operations
from streams.delivery.failing import FAILING, LIMIT, Crossing, FailureCounter, thresholds
from streams.delivery.models import (
    ATTEMPTS_EXHAUSTED,
    GONE,
    WEBHOOK_DISABLED,
    DeadLetter,
    DeliveryJob,
    Outcome,
    delivery_id_for,
)
from streams.kafka.topics import CONTROL, OPERATIONS, domain_topic
from streams.settings import DEFAULT_FAMILIES
from streams.subscriptions.commands import decode_command
from streams.subscriptions.model import Subscription

SUB = Subscription(id="wh_a", workspace_id="ws_1", url="https://hooks.example.com/a",
                   events=("task.*",), secret="enc:v1:x", active=True, created_at=0,
                   updated_at=1_760_000_000_000)
JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_1", "wh_a"), webhook_id="wh_a", workspace_id="ws_1",
    event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json='{"id":"task_1"}', attempt=4, created_at=1_760_000_000_123,
    outcomes=tuple(Outcome(n, n, 503, 1, "HTTP 503") for n in (1, 2, 3, 4)))
FAILED = Outcome(1, 1_760_000_000_500, 503, 12, "HTTP 503")


# -- the counter's rule --------------------------------------------------------------------
def test_thresholds_are_half_and_nine_tenths_rounded_up_below_the_limit() -> None:
    assert thresholds(100) == (50, 90)
    assert thresholds(20) == (10, 18)
    assert thresholds(10) == (5, 9)
    assert thresholds(4) == (2,)  # 90% of 4 rounds up to the limit: the disable says it
    assert thresholds(1) == ()
    assert thresholds(0) == ()


@given(st.integers(min_value=0, max_value=60),
       st.lists(st.sampled_from(["fail", "ok", "change", "rebalance"]), max_size=200))
def test_failing_is_reported_exactly_at_the_crossings_and_disable_exactly_at_the_limit(
        limit: int, steps: list[str]) -> None:
    """Any sequence of outcomes: a model of the rule (a run of failures of one version, reset
    by a success, a new version or a rebalance) says what each failure reports."""
    counter = FailureCounter(limit)
    version, run = 0, 0
    for step in steps:
        if step == "ok":
            counter.succeeded("wh_a")
            run = 0
        elif step == "change":
            version, run = version + 1, 0
        elif step == "rebalance":
            counter.forget([3])
            run = 0
        else:
            got = counter.failed("wh_a", version, 3)
            run += 1
            if limit == 0 or run > limit:
                expected = None
            elif run == limit:
                expected = Crossing(LIMIT, run)
            elif run in (-(-limit // 2), -(-limit * 9 // 10)):
                expected = Crossing(FAILING, run)
            else:
                expected = None
            assert got == expected, (run, limit)
            assert counter.failures("wh_a") == (0 if limit == 0 else min(run, limit))


@given(st.integers(min_value=2, max_value=200))
def test_one_run_reports_each_threshold_once_then_the_limit_once(limit: int) -> None:
    counter = FailureCounter(limit)
    reported = [c for c in (counter.failed("wh_a", 0, 0) for _ in range(3 * limit)) if c]
    assert reported == [*(Crossing(FAILING, t) for t in thresholds(limit)),
                        Crossing(LIMIT, limit)]


def test_counts_are_per_webhook_and_go_with_their_partition() -> None:
    counter = FailureCounter(10)
    for _ in range(4):
        counter.failed("wh_a", 0, 1)
        counter.failed("wh_b", 0, 2)
    counter.forget([1])
    assert (counter.failures("wh_a"), counter.failures("wh_b")) == (0, 4)
    counter.retain([5])
    assert len(counter) == 0


# -- what a crossing and a dead letter make --------------------------------------------------
def _events(records: list[Any]) -> list[Any]:
    return [decode_event(r.value, topic=r.topic, partition=0, offset=0) for r in records
            if r.topic.startswith("domain.")]


def test_the_limit_disables_the_webhook_and_says_so_twice() -> None:
    records = operations.crossed(Crossing(LIMIT, 10), sub=SUB, job=JOB, outcome=FAILED,
                                 limit=10, families=DEFAULT_FAMILIES, now=1_760_000_001_000)
    assert [r.topic for r in records] == [CONTROL, OPERATIONS, domain_topic("webhook")]
    command = decode_command(records[0].value)
    assert (command.op, command.webhook_id, command.reason) == (
        "disable", "wh_a", operations.limit_reason(10))
    notice = registry().decode(OPERATIONAL_EVENT, records[1].value)
    assert (notice["type"], notice["reason"]) == ("webhook.disabled", command.reason)
    (event,) = _events(records)
    assert records[2].key == "ws_1"  # domain events are keyed by workspace
    assert (event.type, event.workspace_id) == ("webhook.disabled", "ws_1")
    assert event.data == {"webhook_id": "wh_a", "url": SUB.url, "reason": command.reason,
                          "consecutive_failures": 10, "failure_limit": 10,
                          "last_response_code": 503, "last_error": "HTTP 503"}
    assert event.id == operational.event_id("webhook.disabled", "wh_a", SUB.updated_at)


def test_a_threshold_makes_one_failing_event_with_the_last_error() -> None:
    (record,) = operations.crossed(Crossing(FAILING, 5), sub=SUB, job=JOB, outcome=FAILED,
                                   limit=10, families=DEFAULT_FAMILIES, now=1)
    (event,) = _events([record])
    assert event.type == "webhook.failing"
    assert (event.data["consecutive_failures"], event.data["failure_limit"],
            event.data["last_error"]) == (5, 10, "HTTP 503")


def test_without_the_family_in_the_deployment_no_event_is_made() -> None:
    families = ("task", "project", "comment", "user")
    records = operations.crossed(Crossing(LIMIT, 10), sub=SUB, job=JOB, outcome=FAILED,
                                 limit=10, families=families, now=1)
    assert [r.topic for r in records] == [CONTROL, OPERATIONS]  # still disabled, still said
    assert operations.crossed(Crossing(FAILING, 5), sub=SUB, job=JOB, outcome=FAILED,
                              limit=10, families=families, now=1) == []
    letter = DeadLetter(JOB, ATTEMPTS_EXHAUSTED, "HTTP 503", 1)
    assert operations.dead_lettered(letter, families=families) == []


@pytest.mark.parametrize("reason", [ATTEMPTS_EXHAUSTED, GONE])
def test_a_failed_delivery_is_news_once_per_job_instance(reason: str) -> None:
    letter = DeadLetter(JOB, reason, "HTTP 503", 1_760_000_000_999)
    (record,) = operations.dead_lettered(letter, families=DEFAULT_FAMILIES)
    (again,) = operations.dead_lettered(letter, families=DEFAULT_FAMILIES)
    (event,) = _events([record])
    assert (record.topic, record.key) == (domain_topic("delivery"), "ws_1")
    assert event.id == _events([again])[0].id  # a repeat after a crash: the same event
    assert event.data == {"delivery_id": JOB.delivery_id, "webhook_id": "wh_a",
                          "event_id": "evt_1", "event_type": "task.created", "attempts": 4,
                          "reason": reason, "last_response_code": 503,
                          "last_error": "HTTP 503"}
    replayed = DeadLetter(replace(JOB, created_at=JOB.created_at + 1), reason, "x", 2)
    (other,) = _events(operations.dead_lettered(replayed, families=DEFAULT_FAMILIES))
    assert other.id != event.id  # a replay that dies again is news again


def test_no_news_of_a_disabled_webhooks_letters_nor_of_an_operational_events() -> None:
    assert operations.dead_lettered(DeadLetter(JOB, WEBHOOK_DISABLED, None, 1),
                                    families=DEFAULT_FAMILIES) == []
    for event_type in sorted(t for t in catalog.ALL_EVENT_TYPES if catalog.is_operational(t)):
        news = replace(JOB, event_type=event_type)
        assert operations.dead_lettered(DeadLetter(news, ATTEMPTS_EXHAUSTED, "x", 1),
                                        families=DEFAULT_FAMILIES) == []


# -- validation and the wire ----------------------------------------------------------------
VALID = {"id": "evt_1", "event": "delivery.dead_lettered", "timestamp": "2025-10-14T10:30:00Z",
         "workspace_id": "ws_1",
         "data": {"delivery_id": "dlv_1", "webhook_id": "wh_1", "event_id": "evt_0",
                  "event_type": "task.created", "attempts": 4, "reason": "gone",
                  "last_response_code": 410}}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("attempts", "4", "must be a whole number"),
    ("attempts", True, "must be a whole number"),
    ("attempts", 4.0, "must be a whole number"),
    ("attempts", 2**31, "must be a whole number"),
    ("attempts", None, "is required"),
    ("last_response_code", "410", "must be a whole number"),
    ("webhook_id", 1, "must be a string"),
])
def test_operational_data_is_type_checked(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        validate_event({**VALID, "data": {**VALID["data"], field: value}})


def test_optional_counts_may_be_absent_or_null() -> None:
    data = {k: v for k, v in VALID["data"].items() if k != "last_response_code"}
    assert validate_event({**VALID, "data": data}).data == data
    assert validate_event({**VALID, "data": {**data, "last_error": None}})


@pytest.mark.parametrize("event_type", ["webhook.failing", "delivery.dead_lettered"])
def test_json_and_avro_forms_decode_to_the_same_event(event_type: str) -> None:
    record = (VALID if event_type == VALID["event"] else
              {**VALID, "event": event_type,
               "data": {"webhook_id": "wh_1", "url": "https://x.example/", "failure_limit": 10,
                        "consecutive_failures": 9, "last_error": "HTTP 500"}})
    as_json = decode_event(json.dumps(record).encode(), topic="t", partition=0, offset=0)
    as_avro = decode_event(operational.encode(record), topic="t", partition=0, offset=0)
    assert (as_json.id, as_json.type, as_json.data) == (as_avro.id, as_avro.type, as_avro.data)
    assert json.loads(as_avro.data_json) == record["data"]  # key order: the schema's


def test_an_event_written_before_the_union_grew_is_still_read() -> None:
    """event.v1 (four data records) names them as the current registry does, so its records,
    fingerprinted so, resolve to the current Event."""
    raw = json.loads((schemas_dir() / "previous" / "event.v1.avsc").read_text())
    named = {k: v for k, v in registry().named.items() if k != EVENT}
    old = parse_schema(raw, named_schemas=named)
    reg = Registry(schemas_dir())
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(old), "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old, {
        "id": "evt_old", "event": "task.created", "timestamp": "2025-10-14T10:30:00Z",
        "workspace_id": "ws_1", "data": ("io.hookstream.events.TaskData", {"id": "t_1"})})
    payload = b"\xc3\x01" + fp + body.getvalue()
    assert fp != reg.fingerprints[EVENT] and fp in reg.by_fingerprint
    event = decode_event(payload, topic="t", partition=0, offset=0)
    assert (event.id, event.type, event.data) == ("evt_old", "task.created", {"id": "t_1"})
