"""An in-memory Kafka for the stages: topics, consumer groups and committed offsets, no broker.

The stages take their clients from factories (streams.pipeline.stage); `LocalBroker.consumer`
and `LocalBroker.producer` are such factories, so a real Stage runs on this module as it
does on Kafka, and tests/unit/test_stage_loop.py drives its loop in milliseconds. Like
arroyo's `backends/local`, it is a module of the package, not a mock: whatever a stage relies
on behaves as Kafka (as its consumer clients present it) does:

- a partition is a log: appended records get offsets 0, 1, 2 ... and keep their key, value,
  headers and timestamp (the producer's, or the broker's clock on a topic created with
  `log_append_time`, as our retry topics are);
- a keyed record goes to the partition Kafka's default partitioner (murmur2) picks;
- a group assigns its members' subscribed partitions by range (the stages' assignor),
  eagerly: every member's listener is told of its revoked partitions and awaited
  while it still holds them (so it can commit), then of its new ones. While its group
  rebalances, a member's `getmany` waits, as a client's does;
- a partition newly assigned starts unpaused, at the group's committed offset, or at the
  beginning (`auto_offset_reset="earliest"`);
- `getmany` returns records of assigned, unpaused partitions from each one's position (which
  `seek` sets), waiting up to `timeout_ms` for one to be appended;
- `commit` stores the offsets given (each the next offset to read) and refuses partitions
  the member does not hold (CommitFailedError), as a broker refuses a stale generation;
- producing to a topic that does not exist fails (UnknownTopicOrPartitionError).

Not modelled: replication, retention, compaction, transactions, sessions (a member leaves
only by `stop`), topics created after a group formed, and failures other than those above.
Polls, sends and commits yield to the event loop at least once, as their round trips do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    ProducerClosed,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

from ..core.timeutil import now_ms
from ..kafka.asyncconsumer import RebalanceListener
from ..kafka.topics import TopicSpec
from ..settings import Settings
from .clients import ConsumerFactory, ProducerFactory

log = logging.getLogger(__name__)

#: What the in-memory broker keeps of a record (a stage reads it as a clients.Record).
Stored: TypeAlias = "ConsumerRecord[bytes, bytes]"

#: ConsumerRecord.timestamp_type: set by the producer, or by the broker on append.
CREATE_TIME = 0
LOG_APPEND_TIME = 1


@dataclass
class _Group:
    members: list[LocalConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    #: One rebalance at a time, as one group coordinator runs them.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LocalBroker:
    """Topics and consumer groups in memory. `clock` gives the broker's time in epoch ms."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        #: Every record appended, in the order they landed, whichever topic.
        self.appended: list[Stored] = []
        self._logs: dict[str, list[list[Stored]]] = {}
        self._log_append_time: set[str] = set()
        self._groups: dict[str, _Group] = {}
        self._running: set[LocalConsumer] = set()
        self._keyless = itertools.count()

    # -- topics ------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1, *,
                     log_append_time: bool = False) -> None:
        if name in self._logs:
            raise ValueError(f"topic {name} exists")
        self._logs[name] = [[] for _ in range(partitions)]
        if log_append_time:
            self._log_append_time.add(name)

    def create_topics(self, specs: Iterable[TopicSpec]) -> None:
        """Topics as streams.kafka.topics.all_topics describes them (retry topics stamped
        with the broker's clock)."""
        for spec in specs:
            self.create_topic(spec.name, spec.partitions, log_append_time=(
                spec.config.get("message.timestamp.type") == "LogAppendTime"))

    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in range(len(self._logs.get(topic, ())))]

    def append(self, topic: str, value: bytes | None, *, key: bytes | None = None,
               partition: int | None = None, headers: Iterable[tuple[str, bytes]] = (),
               timestamp: int | None = None) -> Stored:
        """Append one record, as a producer's acknowledged send does; returns it."""
        logs = self._logs.get(topic)
        if logs is None or (partition is not None and not 0 <= partition < len(logs)):
            raise UnknownTopicOrPartitionError(f"{topic}[{partition}]")
        if partition is None:
            # Kafka's default partitioner for a key; keyless records take turns.
            partition = ((murmur2(key) & 0x7FFFFFFF) if key is not None
                         else next(self._keyless)) % len(logs)
        if topic in self._log_append_time or timestamp is None:
            timestamp = self._clock()
        kind = LOG_APPEND_TIME if topic in self._log_append_time else CREATE_TIME
        records = logs[partition]
        record: Stored = ConsumerRecord(
            topic=topic, partition=partition, offset=len(records), timestamp=timestamp,
            timestamp_type=kind, key=key, value=value, checksum=None,
            serialized_key_size=-1 if key is None else len(key),
            serialized_value_size=-1 if value is None else len(value),
            headers=tuple(headers))
        records.append(record)
        self.appended.append(record)
        for consumer in self._running:
            consumer._wake()
        return record

    def records(self, topic: str, partition: int | None = None) -> list[Stored]:
        """What the topic holds (one partition, or all in partition order)."""
        logs = self._logs[topic]
        chosen = logs if partition is None else [logs[partition]]
        return [record for log_ in chosen for record in log_]

    def _log(self, tp: TopicPartition) -> list[Stored]:
        return self._logs[tp.topic][tp.partition]

    # -- groups ------------------------------------------------------------------------
    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        return self._group(group_id).committed.get(tp)

    def members(self, group_id: str) -> list[LocalConsumer]:
        return list(self._group(group_id).members)

    def _group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    async def _rebalance(self, group_id: str, *, joining: LocalConsumer | None = None,
                         leaving: LocalConsumer | None = None) -> None:
        group = self._group(group_id)
        async with group.lock:
            if leaving is not None:
                group.members.remove(leaving)
            if joining is not None:
                group.members.append(joining)
            members = list(group.members)
            for member in members:
                member._begin_rebalance()
            await asyncio.gather(*(member._revoke() for member in members))
            plan: dict[LocalConsumer, list[TopicPartition]] = {m: [] for m in members}
            # Range, as streams.pipeline.clients asks of Kafka: each topic's sorted partitions
            # in contiguous runs, members in the order they joined, so partition p of topics
            # alike goes to one member.
            for topic in sorted({t for m in members for t in m.topics}):
                takers = [m for m in members if topic in m.topics]
                partitions = sorted(self.partitions(topic))
                share, extra = divmod(len(partitions), len(takers))
                start = 0
                for i, taker in enumerate(takers):
                    end = start + share + (i < extra)
                    plan[taker].extend(partitions[start:end])
                    start = end
            for member in members:
                member._assign(plan[member], group.committed)
            await asyncio.gather(*(member._assigned() for member in members))

    # -- factories (streams.pipeline.stage.ConsumerFactory, ProducerFactory) --------------
    def consumer(self, settings: Settings, group_id: str,
                 drain_timeout: float) -> LocalConsumer:
        return LocalConsumer(self, group_id)

    def producer(self, settings: Settings) -> LocalProducer:
        return LocalProducer(self)

    def tail(self, settings: Settings) -> LocalTail:
        """A PartitionTail factory (streams.pipeline.clients.TailFactory)."""
        return LocalTail(self)


class LocalConsumer:
    """A member of a consumer group on a LocalBroker (streams.pipeline.stage.Consumer)."""

    def __init__(self, broker: LocalBroker, group_id: str, max_poll_records: int = 500) -> None:
        self._broker = broker
        self._group_id = group_id
        self._max_poll_records = max_poll_records
        self.topics: frozenset[str] = frozenset()
        self._listener: RebalanceListener | None = None
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._settled = asyncio.Event()  # set while the group is not rebalancing
        self._woken = asyncio.Event()
        self._state = "new"

    def subscribe(self, topics: list[str], *, listener: RebalanceListener) -> None:
        self.topics = frozenset(topics)
        self._listener = listener

    async def start(self) -> None:
        """Joins the group; returns once it has rebalanced (librdkafka's is assigned in its
        first polls: the stage relies on neither)."""
        self._state = "running"
        self._broker._running.add(self)
        await self._broker._rebalance(self._group_id, joining=self)

    async def stop(self) -> None:
        """Leaves the group (its listener is not called; librdkafka's is, after the stage
        has drained everything anyway); the others rebalance."""
        if self._state != "running":
            return
        self._state = "stopped"
        self._broker._running.discard(self)
        self._wake()
        await self._broker._rebalance(self._group_id, leaving=self)

    # -- fetching ----------------------------------------------------------------------
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Stored]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        await asyncio.sleep(0)  # others run meanwhile, as during a fetch's round trip
        while True:
            if self._state != "running":
                raise ConsumerStoppedError()
            await self._settled.wait()
            self._woken.clear()
            batch = self._fetch(partitions, max_records or self._max_poll_records)
            if batch or loop.time() >= deadline:
                return batch
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._woken.wait()

    def _fetch(self, only: Collection[TopicPartition],
               budget: int) -> dict[TopicPartition, list[Stored]]:
        batch: dict[TopicPartition, list[Stored]] = {}
        for tp in sorted(self._assignment):
            if budget <= 0:
                break
            if tp in self._paused or (only and tp not in only):
                continue
            position = self._positions[tp]
            records = self._broker._log(tp)[position:position + budget]
            if records:
                batch[tp] = records
                self._positions[tp] = position + len(records)
                budget -= len(records)
        return batch

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._held(tp)
            self._paused.add(tp)

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._held(tp)
            self._paused.discard(tp)
        self._wake()

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._held(partition)
        self._positions[partition] = offset
        self._wake()

    def position(self, partition: TopicPartition) -> int:
        self._held(partition)
        return self._positions[partition]

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assignment

    async def commit(self, offsets: Mapping[TopicPartition, int], *,
                     background: bool = False) -> None:
        await asyncio.sleep(0)  # the round trip: others run meanwhile
        lost = [tp for tp in offsets if tp not in self._assignment]
        if self._state != "running" or lost:
            raise CommitFailedError(f"{self._group_id}: not assigned {lost}")
        self._broker._group(self._group_id).committed.update(offsets)

    # -- what the broker does to a member ----------------------------------------------
    def _held(self, tp: TopicPartition) -> None:
        if tp not in self._assignment:
            raise IllegalStateError(f"No current assignment for partition {tp}")

    def _wake(self) -> None:
        self._woken.set()

    def _begin_rebalance(self) -> None:
        self._settled.clear()
        self._wake()

    async def _revoke(self) -> None:
        if self._listener is not None:
            await self._tell(self._listener.on_partitions_revoked)

    def _assign(self, tps: list[TopicPartition], committed: Mapping[TopicPartition, int]) -> None:
        self._assignment = frozenset(tps)
        self._positions = {tp: committed.get(tp, 0) for tp in tps}
        self._paused.clear()
        self._settled.set()

    async def _assigned(self) -> None:
        if self._listener is not None:
            await self._tell(self._listener.on_partitions_assigned)

    async def _tell(self, call: Callable[[Collection[TopicPartition]], Awaitable[None]]) -> None:
        try:
            await call(set(self._assignment))
        except Exception:
            # As aiokafka: a failing listener is logged, and the rebalance goes on.
            log.exception("%s: rebalance listener %s failed", self._group_id, call)


class LocalProducer:
    """A producer to a LocalBroker (streams.pipeline.stage.Producer): every send is
    acknowledged once appended."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None,
                            partition: int | None = None,
                            timestamp_ms: int | None = None) -> RecordMetadata:
        if not self._running:
            raise ProducerClosed()
        await asyncio.sleep(0)  # the round trip: others run meanwhile
        record = self._broker.append(topic, value, key=key, partition=partition,
                                     headers=headers or (), timestamp=timestamp_ms)
        tp = TopicPartition(record.topic, record.partition)
        return RecordMetadata(record.topic, record.partition, tp, record.offset,
                              record.timestamp, record.timestamp_type, 0)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Awaitable[RecordMetadata]:
        # Appended when awaited: those awaited in turn land in the order they were sent.
        return self.send_and_wait(topic, value, key=key, headers=headers,
                                  partition=partition)


if TYPE_CHECKING:  # mypy checks here that a LocalBroker's factories fit the stage's seams
    _FACTORIES: tuple[ConsumerFactory, ProducerFactory] = (LocalBroker().consumer,
                                                           LocalBroker().producer)


class NoRebalanceListener:
    """For a member that only reads (a test's reader of a stage's output): told of
    rebalances, it does nothing."""

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        return None


class LocalTail:
    """The newest records of a partition, read outside any group."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def stop(self) -> None:
        await asyncio.sleep(0)

    async def newest(self, topic: str, partition: int, count: int) -> list[Stored]:
        await asyncio.sleep(0)  # a round trip
        return self._broker.records(topic, partition)[-count:] if count > 0 else []
