"""The history's offsets moved from faust's group (`hookstream`) to a group of their own
(`hookstream-history`, streams.history.feeder). A worker of this release, started where an
older one recorded part of the delivery log, carries on from where that one had got to:
it neither records the older attempts a second time (new seqs would push real attempts out
of the ring) nor skips any."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.delivery.models import SUCCESS, AttemptRecord
from streams.history.feeder import LEGACY_GROUP
from streams.kafka.topics import DELIVERY_LOG

from ..support.api import call
from ..support.fuzzing import wait_no_lag
from ..support.pipeline import Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DEPLOYMENT: DeploymentSpec = {"workers": 0}


def _log_attempts(dep: Deployment, webhook_id: str, count: int) -> list[tuple[int, int]]:
    """`count` attempt records of one webhook on the delivery log: (partition, offset) each."""
    landed: list[tuple[int, int]] = []

    def report(err: object, msg: object) -> None:
        assert err is None, err
        landed.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers,
                         "partitioner": "murmur2_random"})
    for n in range(count):
        record = AttemptRecord(f"dlv_{n}", webhook_id, "ws", "user.added", f"evt_{n}", 1,
                               SUCCESS, 200, 3, None, 1_700_000_000_000 + n)
        producer.produce(dep.settings.topic(DELIVERY_LOG), record.encode(),
                         webhook_id.encode(), on_delivery=report)
    assert producer.flush(30) == 0
    return landed


def test_a_worker_carries_on_from_where_the_agents_group_had_got_to(dep: Deployment) -> None:
    webhook = f"wh_{uuid.uuid4().hex[:8]}"
    landed = _log_attempts(dep, webhook, 10)
    (partition,) = {p for p, _ in landed}
    offsets = sorted(o for _, o in landed)
    # An older release had recorded the first six and committed that in faust's group.
    legacy = Consumer({"bootstrap.servers": dep.settings.bootstrap_servers,
                       "group.id": f"{dep.prefix}{LEGACY_GROUP}"})
    legacy.commit(offsets=[TopicPartition(dep.settings.topic(DELIVERY_LOG), partition,
                                          offsets[6])], asynchronous=False)
    legacy.close()

    dep.create_webhook(webhook, "ws", "/upgrade", ["user.added"])
    worker = dep.start_worker()
    wait_webhook_state(dep, webhook, {"active": True})
    wait_no_lag(dep.settings)

    answer = call(worker.port, "GET", f"/internal/webhooks/{webhook}/attempts?limit=1000",
                  dep.env["HOOKSTREAM_ADMIN_KEY"])
    assert answer.status == 200, answer.body
    assert [r["delivery_id"] for r in answer.body["data"]] == [
        f"dlv_{n}" for n in (9, 8, 7, 6)]
