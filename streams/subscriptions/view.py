"""Keeps a SubscriptionIndex up to date from the compacted hookstream.subscriptions topic.

Why every worker holds every subscription (a global view) instead of a partitioned table:
events are keyed by workspace, written by producers in any language whose partitioners
differ (Java murmur2, librdkafka crc32, Go fnv), so no partitioned table keyed by workspace
or webhook can be trusted to sit on the partition of the events that need it. A global
view needs no repartition hop and answers any lookup locally; it costs memory (about
1 KB per subscription). faust's GlobalTable would do the same, but has open multi-worker
recovery bugs (faust-streaming#283), so this reads the topic with a plain consumer:
no group, all partitions, from the beginning, then tails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..control.commands import Subscription
from ..schemas import SchemaError
from .index import SubscriptionIndex

log = logging.getLogger(__name__)


class SubscriptionsView:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.index = SubscriptionIndex()
        self.ready = asyncio.Event()
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        #: Next offset to read per partition: read-your-writes waits on these.
        self.positions: dict[int, int] = {}
        self._advanced = asyncio.Condition()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100,
        )
        await consumer.start()
        partitions = await _partitions_of(self._bootstrap, self._topic)
        tps = [TopicPartition(self._topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        ends = await consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run({tp.partition: o for tp, o in ends.items()}))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, ends_at_start: dict[int, int]) -> None:
        assert self._consumer is not None
        if all(end == 0 for end in ends_at_start.values()):
            self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    self._apply(message.key, message.value)
                    self.positions[tp.partition] = message.offset + 1
            if not self.ready.is_set() and all(
                self.positions.get(p, 0) >= end for p, end in ends_at_start.items()
            ):
                log.info("subscriptions view ready: %d subscriptions", len(self.index))
                self.ready.set()
            if batches:
                async with self._advanced:
                    self._advanced.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.index.delete(key.decode())
            return
        try:
            self.index.put(Subscription.decode(value))
        except SchemaError as exc:
            # Only the control agent writes here; a bad record is a bug, not input.
            log.error("skipping undecodable subscription record %r: %s", key, exc)


async def _partitions_of(bootstrap: str, topic: str) -> list[int]:
    def describe() -> list[int]:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise RuntimeError(f"topic {topic} does not exist; run `hookstream topics create`")
        return sorted(found.partitions)

    return await asyncio.to_thread(describe)
