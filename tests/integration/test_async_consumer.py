"""The stages' librdkafka consumer (streams.kafka.asyncconsumer) on the real broker, held to
the rules streams.pipeline.stage relies on (streams.pipeline.clients.Consumer): a seek sets
where the next batch starts, records fetched before it are not handed out; a paused
partition gives nothing until resumed, then goes on where it stood; a rebalance is told to
the listener, which may commit while the partitions are still held; and a partition
paused when it was revoked comes back unpaused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.asyncconsumer import AsyncConsumer
from streams.pipeline.clients import Record, kafka_consumer
from streams.settings import Settings

PER_PARTITION = 200


def _topic(bootstrap: str) -> str:
    name = f"test-asyncconsumer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(PER_PARTITION):
        for partition in (0, 1):
            producer.produce(name, value=f"{partition}:{i}".encode(), key=b"k",
                             partition=partition, headers=[("n", str(i).encode())])
    assert producer.flush(30) == 0
    return name


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[TopicPartition]]] = []
        #: Records read (by _read) before each assignment: a batch that brings one holds
        #: its records too, so this is where that assignment's records begin.
        self.read: list[Record] = []
        self.assigned_at: list[int] = []
        #: Run while the revoked partitions are still held.
        self.on_revoke: Callable[[list[TopicPartition]], Awaitable[None]] | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.events.append(("revoked", sorted(revoked)))
        if self.on_revoke is not None and revoked:
            await self.on_revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.append(("assigned", sorted(assigned)))
        self.assigned_at.append(len(self.read))


def _consumer(bootstrap: str, group: str, listener: Listener) -> AsyncConsumer:
    consumer = kafka_consumer(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}),
                              group, 5.0)
    assert isinstance(consumer, AsyncConsumer)
    return consumer


async def _read(consumer: AsyncConsumer, until: Callable[[list[Record]], bool],
                what: str, timeout: float = 60.0,
                found: list[Record] | None = None) -> list[Record]:
    """Records read (into `found`) until `until(all read so far)` holds."""
    found = [] if found is None else found
    deadline = time.monotonic() + timeout
    while not until(found):
        assert time.monotonic() < deadline, f"no {what} within {timeout}s: {len(found)} read"
        for records in (await consumer.getmany(timeout_ms=200, max_records=50)).values():
            found.extend(records)
    return found


def _of(records: list[Record], partition: int) -> list[int]:
    return [r.offset for r in records if r.partition == partition]


def test_seek_and_pause_set_what_the_next_batches_hold(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def main() -> None:
        listener = Listener()
        consumer = _consumer(kafka_bootstrap, f"g-{topic}", listener)
        consumer.subscribe([topic], listener=listener)
        await consumer.start()
        try:
            first = await _read(consumer, lambda f: bool(_of(f, 0)) and bool(_of(f, 1)),
                                "records of both partitions")
            assert consumer.assignment() == {p0, p1}
            record = next(r for r in first if r.partition == 0)
            assert (record.key, record.value, record.topic) == (b"k", b"0:0", topic)
            assert dict(record.headers)["n"] == b"0"
            # What the stage does to hold a partition (pause, and seek to the record it
            # is to read next), and to read one again from a record.
            consumer.pause(p1)
            consumer.seek(p1, 100)
            consumer.seek(p0, 3)
            again = await _read(consumer, lambda f: len(_of(f, 0)) >= PER_PARTITION - 3,
                                "partition 0 read again from offset 3")
            assert _of(again, 0) == list(range(3, PER_PARTITION))
            assert _of(again, 1) == [], "a paused partition gave records"
            consumer.resume(p1)
            rest = await _read(consumer, lambda f: len(_of(f, 1)) >= PER_PARTITION - 100,
                               "partition 1 from offset 100")
            assert _of(rest, 1) == list(range(100, PER_PARTITION))
            assert _of(rest, 0) == []
        finally:
            await consumer.stop()

    asyncio.run(main())


def test_a_rebalance_lets_the_listener_commit_and_resumes_what_was_paused(
        kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:8]}"
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    done_at = {p0: 50, p1: 70}  # what the listener commits on revoke

    async def main() -> None:
        listener = Listener()
        consumer = _consumer(kafka_bootstrap, group, listener)

        async def commit_done(revoked: list[TopicPartition]) -> None:
            await consumer.commit({tp: done_at[tp] for tp in revoked})

        listener.on_revoke = commit_done
        consumer.subscribe([topic], listener=listener)
        await consumer.start()
        other_listener = Listener()
        other = _consumer(kafka_bootstrap, group, other_listener)
        try:
            await _read(consumer, lambda f: bool(_of(f, 0)) and bool(_of(f, 1)),
                        "records of both partitions", found=listener.read)
            consumer.pause(p0, p1)
            consumer.seek(p0, 0)
            consumer.seek(p1, 0)
            # A second member joins: both partitions are revoked (committed by the
            # listener), then shared; it leaves: both come back to the first.
            other.subscribe([topic], listener=other_listener)
            await other.start()
            reading = asyncio.create_task(_read(other, lambda f: False, "", timeout=600))
            await _read(consumer, lambda f: len(listener.events) >= 3, "a rebalance",
                        found=listener.read)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            await other.stop()

            def back(read: list[Record]) -> list[Record]:
                """What came since both partitions came back."""
                return read[listener.assigned_at[-1]:] if len(listener.events) >= 5 else []

            await _read(consumer, lambda f: len(back(f)) >= 2 * PER_PARTITION - 50 - 70,
                        "both partitions, unpaused, from the committed offsets",
                        found=listener.read)
            came = back(listener.read)
            assert _of(came, 0) == list(range(50, PER_PARTITION))
            assert _of(came, 1) == list(range(70, PER_PARTITION))
            assert ("revoked", [p0, p1]) in listener.events
            assert consumer.assignment() == {p0, p1}
        finally:
            await consumer.stop()

    asyncio.run(main())
    check = RdConsumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committed = check.committed([RdTopicPartition(topic, 0), RdTopicPartition(topic, 1)],
                                    timeout=30)
    finally:
        check.close()
    # The last revoke (at stop) committed too; nothing was committed past what was done.
    assert {(p.partition, p.offset) for p in committed} == {(0, 50), (1, 70)}


def test_a_stop_during_an_assignments_listener_waits_for_it_then_closes(
        kafka_bootstrap: str) -> None:
    """A worker told to stop while its delivery stage's listener still reads the duplicate
    guard's partitions (inside librdkafka's assignment callback): the close waits for the
    callback to end instead of running inside it (it hung the owner thread for good, and
    the worker until it was killed)."""
    topic = _topic(kafka_bootstrap)
    events: list[str] = []

    class Slow(Listener):
        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            events.append("assigning")
            await asyncio.sleep(2.0)
            events.append("assigned")

        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            events.append("revoked")

    async def main() -> None:
        listener = Slow()
        consumer = _consumer(kafka_bootstrap, f"g-{topic}", listener)
        consumer.subscribe([topic], listener=listener)
        await consumer.start()
        fetching = asyncio.create_task(consumer.getmany(timeout_ms=30_000, max_records=10))
        deadline = time.monotonic() + 60
        while "assigning" not in events:
            assert time.monotonic() < deadline, "no assignment within 60s"
            await asyncio.sleep(0.05)
        fetching.cancel()  # as a stage's loop is, first
        await asyncio.gather(fetching, return_exceptions=True)
        await asyncio.wait_for(consumer.stop(), 60)

    asyncio.run(main())
    assert events == ["assigning", "assigned", "revoked"]
