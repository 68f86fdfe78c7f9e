"""Poison messages on every input topic are quarantined with their reasons; traffic flows on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams import topics
from streams.control.commands import Command
from streams.schemas import EVENT, SUBSCRIPTION, registry

from ..support.pipeline import Deployment, wait_webhook_state

pytestmark = pytest.mark.integration

OVERSIZED = 300 * 1024  # over the 256 KiB event limit, under the broker's 1 MiB


@pytest.fixture(scope="module")
def dep(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(kafka_bootstrap, Path(tmp_path_factory.mktemp("poison")))
    deployment.start_worker()
    yield deployment
    deployment.close()


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
        sent.add((value, dep.settings.topic(topic)))

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

    def quarantined(messages: list) -> set[tuple[bytes, str]]:
        return {(m.value(), dict(m.headers())["hookstream-source-topic"].decode())
                for m in messages}

    invalid.wait_for(lambda ms: quarantined(ms) >= sent, timeout=60,
                     what=f"all {len(sent)} poison messages quarantined")
    for message in invalid.messages:
        headers = {k: v.decode() for k, v in message.headers()}
        assert int(headers["hookstream-source-offset"]) >= 0
        assert headers["hookstream-error"].strip()
    assert [json.loads(r.body)["id"] for r in dep.receiver.at(f"/ok/{wh}")] == [good]
