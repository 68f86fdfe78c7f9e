"""KafkaTail (the duplicate guard's reader of the delivery log) on the real broker: the
newest records of each partition, oldest first, read in turn on one consumer; and once a
partition is read it is paused, so the consumer fetches nothing until the next call (a
fetch left waiting on the broker would hold the next call's offset requests behind it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.pipeline.clients import KafkaTail
from streams.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: Records written to partition p: p * 7 (partition 0 stays empty).
PER_PARTITION = 7


def _filled_topic(bootstrap: str) -> str:
    name = f"test-tail-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for p in range(PARTITIONS):
        for n in range(p * PER_PARTITION):
            producer.produce(name, value=f"{p}:{n}".encode(), partition=p)
    assert producer.flush(30) == 0
    return name


@pytest.mark.parametrize("count", [1, 5, 100])
def test_each_partition_gives_its_newest_records_oldest_first_and_is_paused_after(
        kafka_bootstrap: str, count: int) -> None:
    topic = _filled_topic(kafka_bootstrap)

    async def main() -> dict[int, list[bytes]]:
        tail = KafkaTail(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}))
        await tail.start()
        found: dict[int, list[bytes]] = {}
        try:
            # Twice over, in turn: a partition read again is read from its newest again.
            for p in [*range(PARTITIONS), *range(PARTITIONS)]:
                found[p] = [r.value or b"" for r in await tail.newest(topic, p, count)]
                consumer = tail._consumer  # what it fetches between calls: nothing
                assert consumer.paused() == {*consumer.assignment()}
                assert len(consumer.assignment()) == 1
        finally:
            await tail.stop()
        return found

    found = asyncio.run(main())
    for p in range(PARTITIONS):
        written = [f"{p}:{n}".encode() for n in range(p * PER_PARTITION)]
        assert found[p] == written[-count:]
