"""Poison messages on every input topic are quarantined with their reasons; traffic flows on."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.core.schemas import EVENT, SUBSCRIPTION, registry
from streams.core.timeutil import now_ms
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.routing import undeliverable
from streams.kafka import topics
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.pipeline.records import Origin, record_size
from streams.subscriptions.commands import Command, redacted_copy

from ..support import hostile
from ..support.fuzzing import (
    TrackedProducer,
    headers_of,
    quarantined_copies,
    wait_no_lag,
)
from ..support.pipeline import Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

OVERSIZED = 300 * 1024  # over the 256 KiB event limit, under the broker's 1 MiB


DEPLOYMENT: DeploymentSpec = {}


def _valid_avro_event(ws: str) -> bytes:
    return registry().encode(EVENT, {
        "id": "evt_x", "event": "task.created", "timestamp": "2025-10-14T10:30:00Z",
        "workspace_id": ws, "data": ("io.hookstream.events.TaskData", {"id": "t"})})


def _poison_for_domain(ws: str) -> dict[str, bytes]:
    avro = _valid_avro_event(ws)
    return {
        "garbage": b"\x00\xff garbage \xfe",
        "truncated avro": avro[: len(avro) // 2],
        "wrong schema": registry().encode(SUBSCRIPTION, {
            "id": "wh", "workspace_id": ws, "url": "https://x", "events": ["*"], "secret": "s",
            "active": True, "created_at": 0, "updated_at": 0}),
        "wrong types": json.dumps({"event": "task.created", "timestamp": 5,
                                   "workspace_id": ws, "data": {"id": 7}}).encode(),
        "unknown event type": json.dumps({"event": "task.exploded", "workspace_id": ws,
                                          "timestamp": "2025-10-14T10:30:00Z",
                                          "data": {"id": "t"}}).encode(),
        "oversized": json.dumps({"event": "task.created", "workspace_id": ws,
                                 "timestamp": "2025-10-14T10:30:00Z",
                                 "data": {"id": "t", "blob": "x" * OVERSIZED}}).encode(),
    }


def _poison_for_control(wh: str) -> dict[str, bytes]:
    good = Command(op="create", webhook_id=wh, workspace_id="ws",
                   webhook={"url": "https://example.com/h", "events": ["*"],
                            "secret": "whsec_0123456789"}).encode()
    return {
        "garbage": b"\x00\xff garbage \xfe",
        "truncated avro": good[: len(good) // 2],
        "wrong types": json.dumps({"op": "create", "webhook_id": wh, "workspace_id": "ws",
                                   "webhook": {"url": 5, "events": "task.created"}}).encode(),
        "unknown op": json.dumps({"op": "explode", "webhook_id": wh}).encode(),
        "oversized": json.dumps({"op": "update", "webhook_id": wh,
                                 "webhook": {"description": "x" * OVERSIZED}}).encode(),
    }


def test_every_input_topic_quarantines_poison_and_valid_traffic_flows(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    ws, wh = f"ws_{run}", f"wh_{run}"
    dep.create_webhook(wh, ws, f"/ok/{wh}", ["*"])
    wait_webhook_state(dep, wh, {"active": True})
    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers,
                         "message.max.bytes": 1_000_000})
    sent: set[tuple[bytes, str]] = set()

    def send(topic: str, key: str, value: bytes) -> None:
        producer.produce(dep.settings.topic(topic), value, key.encode())
        # A refused command is kept as redacted_copy keeps it (an undecodable Avro one
        # as a digest: tests/unit/test_command_redaction.py); anything else as it came.
        kept = redacted_copy(value) if topic == topics.CONTROL else value
        sent.add((kept, dep.settings.topic(topic)))

    for family in dep.settings.families:
        for value in _poison_for_domain(ws).values():
            send(topics.domain_topic(family), ws, value)
    for value in _poison_for_control(f"wh_bad_{run}").values():
        send(topics.CONTROL, f"wh_bad_{run}", value)
    # Stage inputs written by the pipeline itself get the same treatment.
    for name in (topics.DELIVERIES, *topics.RETRY_TOPICS, topics.DLQ, topics.DELIVERY_LOG):
        send(name, wh, f"garbage on {name}".encode())
    assert producer.flush(30) == 0
    good = dep.publish("task.created", ws, {"id": "after-poison"})

    dep.receiver.wait_for(lambda _: any(json.loads(r.body)["id"] == good
                                        for r in dep.receiver.at(f"/ok/{wh}")),
                          what="the valid event after the poison")
    invalid = dep.reader(topics.INVALID)

    def quarantined(messages: list[Any]) -> set[tuple[bytes, str]]:
        return {(m.value(), dict(m.headers())["hookstream-source-topic"].decode())
                for m in messages}

    invalid.wait_for(lambda ms: quarantined(ms) >= sent, timeout=60,
                     what=f"all {len(sent)} poison messages quarantined")
    for message in invalid.messages:
        headers = {k: v.decode() for k, v in message.headers()}
        assert int(headers["hookstream-source-offset"]) >= 0
        assert headers["hookstream-error"].strip()
    assert [json.loads(r.body)["id"] for r in dep.receiver.at(f"/ok/{wh}")] == [good]


# -- issue 10: no record can stall a partition -------------------------------------------
def _metric(dep: Deployment, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{dep.workers[0].port}/metrics",
                                timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def test_deep_nesting_on_a_domain_topic_is_quarantined_and_the_partition_moves_on(
        dep: Deployment) -> None:
    """json.loads raised RecursionError, which nothing caught: the fan-out left the offset
    uncommitted for ever, so its partitions' committed offsets never passed it."""
    run = uuid.uuid4().hex[:6]
    ws, wh = f"ws_deep_{run}", f"wh_deep_{run}"
    dep.create_webhook(wh, ws, f"/deep/{wh}", ["*"])
    wait_webhook_state(dep, wh, {"active": True})
    producer = TrackedProducer(dep.settings.bootstrap_servers)
    for family in dep.settings.families:
        for payload in hostile.deep_nesting(5000):
            producer.send(dep.settings.topic(topics.domain_topic(family)), payload, ws.encode())
    sent = producer.flush()
    good = dep.publish("task.created", ws, {"id": "after-deep"})

    dep.receiver.wait_for(lambda _: [json.loads(r.body)["id"]
                                     for r in dep.receiver.at(f"/deep/{wh}")] == [good],
                          what="the valid event after the deep ones")
    copies = quarantined_copies(dep, sent, f"all {len(sent)} deeply nested events quarantined")
    for record in sent:
        copy = copies[record.origin]
        assert copy.value() == record.value
        assert headers_of(copy)["hookstream-error"].startswith(b"invalid event: ")
    wait_no_lag(dep.settings)


def test_an_event_whose_job_would_be_too_big_is_quarantined(dep: Deployment) -> None:
    """Under 256 KiB as written, but `1e20` is sent as 21 digits: its job would be over the
    broker's limit, and producing it was retried for ever."""
    run = uuid.uuid4().hex[:6]
    ws, wh = f"ws_grow_{run}", f"wh_grow_{run}"
    dep.create_webhook(wh, ws, f"/grow/{wh}", ["*"])
    wait_webhook_state(dep, wh, {"active": True})
    numbers = b",".join([b"1e20"] * 50_000)
    payload = (b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z","workspace_id":"'
               + ws.encode() + b'","data":{"id":"t","n":[' + numbers + b"]}}")
    producer = TrackedProducer(dep.settings.bootstrap_servers)
    producer.send(dep.settings.topic(topics.domain_topic("task")), payload, ws.encode())
    sent = producer.flush()
    copies = quarantined_copies(dep, sent, "the growing event quarantined")
    assert b"bytes as sent" in headers_of(copies[sent[0].origin])["hookstream-error"]
    good = dep.publish("task.created", ws, {"id": "after-growing"})
    dep.receiver.wait_for(lambda _: [json.loads(r.body)["id"]
                                     for r in dep.receiver.at(f"/grow/{wh}")] == [good],
                          what="the valid event after it")
    wait_no_lag(dep.settings)


def test_deep_nesting_on_control_is_quarantined_and_commands_still_apply(
        dep: Deployment) -> None:
    """The control agent caught only InvalidCommand and SchemaError: RecursionError stopped
    it, and the commands behind it were not applied."""
    run = uuid.uuid4().hex[:6]
    producer = TrackedProducer(dep.settings.bootstrap_servers)
    for i, payload in enumerate(hostile.deep_nesting(5000)):
        producer.send(dep.settings.topic(topics.CONTROL), payload, f"wh_deep_{run}_{i}".encode())
    sent = producer.flush()
    # One create per partition behind the deep commands.
    created = [f"wh_after_{run}_{i}" for i in range(3 * dep.settings.partitions)]
    for wh in created:
        dep.create_webhook(wh, f"ws_{run}", f"/after/{wh}", ["*"])
    for wh in created:
        wait_webhook_state(dep, wh, {"active": True})
    copies = quarantined_copies(dep, sent, f"all {len(sent)} deep commands quarantined")
    for record in sent:
        assert copies[record.origin].value() == record.value
        assert headers_of(copies[record.origin])["hookstream-error"].startswith(
            b"invalid command: ")
    wait_no_lag(dep.settings)


def test_a_record_whose_handler_keeps_failing_is_quarantined_after_three_tries(
        dep: Deployment) -> None:
    """A forged job that decodes, for a webhook that does not exist: its dead letter (the
    job, plus why and where from) is over the dead-letter topic's limit, so the handler's
    output can never be produced. It used to be retried for ever, its offset never
    committed. Now: three tries, then quarantined with the reason, and the partition moves.
    """
    run = uuid.uuid4().hex[:6]
    wh = f"wh_gone_{run}"
    origin = Origin(dep.settings.topic(topics.DELIVERIES), 0, 0)

    def job(blob: int) -> DeliveryJob:
        return DeliveryJob(
            delivery_id=delivery_id_for(f"evt_{run}", wh), webhook_id=wh,
            workspace_id="ws_gone", event_id=f"evt_{run}", event_type="task.created",
            event_timestamp="2025-10-14T10:30:00Z", data_json=f'{{"blob":"{"x" * blob}"}}',
            attempt=1, created_at=now_ms())

    def sizes(blob: int) -> tuple[int, int]:
        forged = job(blob)
        letter = undeliverable(forged, "webhook_deleted", origin, now_ms())[0]
        return (record_size(wh.encode(), forged.encode(), []),
                record_size(wh.encode(), letter.value, list(letter.headers)))

    blob = MAX_MESSAGE_BYTES - 200
    blob -= sizes(blob)[0] - (MAX_MESSAGE_BYTES - 64)
    job_size, letter_size = sizes(blob)
    assert job_size <= MAX_MESSAGE_BYTES < letter_size, (job_size, letter_size)
    failures_before = _metric(dep, 'hookstream_handler_failures_total{stage="delivery"}')

    producer = TrackedProducer(dep.settings.bootstrap_servers)
    producer.send(dep.settings.topic(topics.DELIVERIES), job(blob).encode(), wh.encode())
    sent = producer.flush()
    copy = quarantined_copies(dep, sent, "the job quarantined")[sent[0].origin]
    assert copy.value() == sent[0].value
    assert copy.key() == wh.encode()
    reason = headers_of(copy)["hookstream-error"].decode()
    assert reason.startswith("handler failed after 3 attempts: RecordTooLarge: "), reason
    assert _metric(dep, 'hookstream_handler_failures_total{stage="delivery"}') == (
        failures_before + 1)
    wait_no_lag(dep.settings)
