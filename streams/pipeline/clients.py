"""What a stage uses of its Kafka clients, and the clients it gets by default (librdkafka's
consumer and producer).

A stage is handed its clients by factories (as arroyo's StreamProcessor is handed its
consumer): `Consumer` and `Producer` are the whole surface it relies on, so
streams.pipeline.local can stand in for Kafka in tests of the stage loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..kafka.asyncconsumer import AsyncConsumer, RebalanceListener
from ..kafka.asyncproducer import AsyncProducer
from ..kafka.topics import INVALID_MAX_MESSAGE_BYTES
from ..settings import Settings


class Record(Protocol):
    """A consumed record, as a stage reads it: aiokafka's ConsumerRecord is one, and so is
    the librdkafka consumer's (streams.kafka.asyncconsumer.ConsumedRecord)."""

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...

    @property
    def timestamp(self) -> int:
        """Epoch ms: the producer's, or the broker's on LogAppendTime topics."""
        ...


class Consumer(Protocol):
    """A consumer-group member, as AIOKafkaConsumer is one.

    The stage relies on Kafka's rules: `getmany` returns records of assigned, unpaused
    partitions from each one's position (a `seek` sets it; a fresh assignment starts at the
    group's committed offset) and waits up to `timeout_ms` for some, and out of a
    rebalance; `commit` stores the offsets given, each the next one to read.
    """

    def subscribe(self, topics: list[str], *, listener: RebalanceListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, *, timeout_ms: int,
                      max_records: int) -> Mapping[TopicPartition, Sequence[Record]]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def assignment(self) -> AbstractSet[TopicPartition]: ...

    async def commit(self, offsets: Mapping[TopicPartition, int], *,
                     background: bool = False) -> None:
        """`background`: the caller goes on polling meanwhile, and the commit may be
        answered through a later poll (cancel the wait where no poll follows)."""
        ...


class Producer(Protocol):
    """A producer whose sends are done once the record is acknowledged (acks=all) and
    raise KafkaError when it was not."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None,
                            partition: int | None = None) -> object:
        """`partition` None: the key's (Java's murmur2), or any for no key."""
        ...

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Awaitable[object]:
        """send_and_wait, begun now and awaited later: records sent one after another are
        produced in that order, and many can be awaited in turn without a task each."""
        ...


#: (settings, group id, drain timeout) -> an unstarted consumer of that group.
ConsumerFactory: TypeAlias = Callable[[Settings, str, float], Consumer]
#: settings -> an unstarted producer.
ProducerFactory: TypeAlias = Callable[[Settings], Producer]


def librdkafka_reading(settings: Settings, group_id: str, read_ahead: int) -> dict[str, Any]:
    """What every librdkafka consumer of ours sets (streams.kafka.asyncconsumer): offsets
    stored in `group_id` only when its owner commits them, from the log's beginning where
    it has none, and about `read_ahead` records queued ahead, not librdkafka's 64 MB; once
    that is queued, the next fetch waits 10 ms, not librdkafka's second."""
    return {
        "bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "queued.min.messages": read_ahead, "queued.max.messages.kbytes": 8_192,
        "fetch.queue.backoff.ms": 10,
    }


def kafka_consumer(settings: Settings, group_id: str, drain_timeout: float) -> Consumer:
    """The stages' consumer (librdkafka: streams.kafka.asyncconsumer): offsets committed
    by the stage only."""
    # Rebalances wait for in-flight work up to the drain timeout, and for the listener.
    rebalance_s = drain_timeout + 30
    consumer: Consumer = AsyncConsumer({
        # A few thousand records: a stage takes at most MAX_IN_FLIGHT_PER_PARTITION of a
        # partition at a time anyway.
        **librdkafka_reading(settings, group_id, read_ahead=2_000),
        # A killed worker's partitions move after 15 s.
        "session.timeout.ms": 15_000, "heartbeat.interval.ms": 3_000,
        # Also librdkafka's rebalance timeout, and the longest a drain may keep the poller.
        "max.poll.interval.ms": int(rebalance_s * 1000),
        # Range: partition p of every topic the group reads goes to one member, so one
        # worker at a time sends a webhook's jobs and retries (its rate limit and duplicate
        # guard hold: streams.delivery.ratelimit). The same protocol name and assignment as
        # Java's and aiokafka's range assignor, so members of either kind share a group
        # during a rolling upgrade.
        "partition.assignment.strategy": "range",
        # The broker holds a fetch that finds nothing this long (HOOKSTREAM_FETCH_WAIT_MS,
        # 50). At librdkafka's 500 ms, (b)'s p99 was 270-480 ms: some records waited for
        # a fetch to time out. At 50: 36-64 ms. An idle stage then fetches 20 times a
        # second.
        "fetch.wait.max.ms": settings.fetch_wait_ms,
    }, callback_timeout_s=rebalance_s)
    return consumer


def kafka_producer(settings: Settings) -> Producer:
    """The stages' producer (librdkafka: streams.kafka.asyncproducer): every record
    acknowledged by all in-sync replicas, idempotent."""
    producer: Producer = AsyncProducer({
        "bootstrap.servers": settings.bootstrap_servers, "acks": "all",
        "enable.idempotence": True, "linger.ms": 5,
        # Keyed records land where Java producers (and aiokafka, before) put them.
        "partitioner": "murmur2_random",
        # Batches stay under every topic's limit: librdkafka's batch.size (1,000,000 bytes)
        # is below MAX_MESSAGE_BYTES. A single bigger record (a copy for hookstream.invalid,
        # checked in Stage._outgoing) goes in a batch of its own, in a request of at
        # most message.max.bytes: that copy plus room for the request's framing.
        "message.max.bytes": INVALID_MAX_MESSAGE_BYTES + 64 * 1024,
    })
    return producer


class PartitionTail(Protocol):
    """Reads the newest records of one partition, outside any group."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def newest(self, topic: str, partition: int, count: int) -> list[Record]:
        """Up to `count` records, the newest as of the call, oldest first."""
        ...


#: settings -> an unstarted PartitionTail.
TailFactory: TypeAlias = Callable[[Settings], PartitionTail]


#: How long the broker may hold a tail's fetch that finds nothing: short, because the
#: broker answers a connection's requests in turn, and the next partition's offsets were
#: asked behind the long poll of the last one (aiokafka's 500 ms by default; a fresh
#: worker's duplicate guard took 450 ms a partition, and its first jobs waited for it).
TAIL_FETCH_WAIT_MS = 20


class KafkaTail:
    """PartitionTail on an aiokafka consumer without a group (assign, seek, read to the end
    offset taken at the start). The partition is paused once read: between calls the
    consumer fetches nothing."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=TAIL_FETCH_WAIT_MS)

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def newest(self, topic: str, partition: int, count: int) -> list[Record]:
        tp = TopicPartition(topic, partition)
        self._consumer.assign([tp])
        try:
            end = (await self._consumer.end_offsets([tp]))[tp]
            first = (await self._consumer.beginning_offsets([tp]))[tp]
            self._consumer.seek(tp, max(first, end - count))
            found: list[Record] = []
            while await self._consumer.position(tp) < end:
                batch = await self._consumer.getmany(tp, timeout_ms=1000)
                found.extend(r for r in batch.get(tp, ()) if r.offset < end)
            return found
        finally:
            self._consumer.pause(tp)


def kafka_tail(settings: Settings) -> PartitionTail:
    return KafkaTail(settings)
