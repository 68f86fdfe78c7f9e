"""The stages' consumer (streams.pipeline.clients.kafka_consumer) on the real broker: a
member joins its group with one JoinGroup, so members starting together settle at once.

aiokafka sends a JoinGroup per assignor offered, each with a longer protocol list; the
broker takes each changed list as a reason to rebalance again. With two assignors offered
a lone member took two generations to settle, and two workers started together could keep
their group rebalancing every 100 ms for minutes (the fan-out and delivery groups did so
in CI: generation 8 to 633 while a test waited for readiness)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.pipeline.clients import Consumer, kafka_consumer
from streams.settings import Settings

PARTITIONS = 6


def _topic(bootstrap: str) -> str:
    name = f"test-stageconsumer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(timeout=30)
    return name


class _Assignments(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.latest: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.latest = set()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.latest = set(assigned)


def _generations(caplog: pytest.LogCaptureFixture, group: str) -> list[int]:
    """The generations aiokafka reported joining, in order (its INFO line per join:
    "Joined group '%s' (generation %s) with member_id %s")."""
    found = []
    for record in caplog.records:
        args = record.args
        if (record.name == "aiokafka.consumer.group_coordinator"
                and str(record.msg).startswith("Joined group")
                and isinstance(args, tuple) and args[0] == group):
            found.append(int(str(args[1])))
    return found


async def _members(bootstrap: str, topic: str, group: str,
                   count: int) -> tuple[list[Consumer], list[_Assignments]]:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    consumers = [kafka_consumer(settings, group, 5.0) for _ in range(count)]
    listeners = [_Assignments() for _ in consumers]
    for consumer, listener in zip(consumers, listeners, strict=True):
        consumer.subscribe([topic], listener=listener)
    await asyncio.gather(*(consumer.start() for consumer in consumers))
    return consumers, listeners


def test_a_lone_member_settles_in_the_first_generation(
        kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiokafka.consumer.group_coordinator")
    topic, group = _topic(kafka_bootstrap), f"test-stageconsumer-{uuid.uuid4().hex[:8]}"

    async def main() -> set[TopicPartition]:
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 1)
        try:
            return listeners[0].latest
        finally:
            await consumers[0].stop()

    assigned = asyncio.run(main())
    assert assigned == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    assert _generations(caplog, group) == [1]


def test_two_members_started_together_split_the_partitions_within_two_generations(
        kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiokafka.consumer.group_coordinator")
    topic, group = _topic(kafka_bootstrap), f"test-stageconsumer-{uuid.uuid4().hex[:8]}"

    async def main() -> list[set[TopicPartition]]:
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 2)
        try:
            # Both polled until each holds a share: the second member's join can come
            # after the first member's lone generation. A group that keeps rebalancing
            # never gets there; the deadline says so rather than the suite's timeout.
            deadline = asyncio.get_running_loop().time() + 60
            while not all(listener.latest for listener in listeners):
                assert asyncio.get_running_loop().time() < deadline, \
                    f"no stable split in 60 s: generations {_generations(caplog, group)}"
                await asyncio.gather(*(consumer.getmany(timeout_ms=200, max_records=1)
                                       for consumer in consumers))
            return [listener.latest for listener in listeners]
        finally:
            await asyncio.gather(*(consumer.stop() for consumer in consumers))

    shares = asyncio.run(main())
    assert sorted(len(share) for share in shares) == [PARTITIONS // 2] * 2
    assert shares[0] | shares[1] == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    # One generation with the first member alone at most, then one with both.
    assert max(_generations(caplog, group)) <= 2
