"""Fills the history table (streams.history.table) from hookstream.delivery-log, on the
partitions whose history this worker holds.

Why not a faust agent, as before: faust makes each record a message, an event, a queue
entry and an acknowledgement in Python, about 350 µs of CPU per attempt record. Under
`make bench` (a) that was a quarter of a loaded worker's CPU (1.51 CPU-s per 1,000
deliveries with the history, 1.16 with none at all), and the history fell 16 s behind the
deliveries it records. Here an aiokafka consumer reads records in batches (BATCH), as
the stages do.

Which partitions: the history table's, as faust's group assigns them (the API forwards a
webhook's history requests by the same assignment: Api.forwarded). Partition p of the
table holds the webhooks whose attempts are on partition p of the log, so the consumer is
assigned log partition p by hand whenever faust's group makes this worker the table's
owner for p, once faust has recovered the table (`on_rebalance_complete`; the loop looks up
where to start, so faust's recovery never waits for us); and it gives up all of them when
that group rebalances (`on_partitions_revoked`): the batch under way lands and is committed
first, and faust's rebalance waits for that. So, as with the agent, one member of faust's
group at a time writes a webhook's slots. Unlike the agent's, this group's commits are not
fenced by a generation: a worker dropped from faust's group while it hangs (a pause longer
than the session timeout) may write a batch after the next owner started, and those
attempts then show twice in the history; deliveries are not affected.

Offsets are committed in a group of their own (`hookstream-history`), which no member
joins: a committed offset is one whose records' slots all landed (History.record), so a
crash loses no attempt, and one a crash between commits (every second) makes the next owner
record again. Where a partition starts: streams.history.upgrade.

A record that is no attempt record goes to hookstream.invalid with the reason, like every
other topic's, and the history goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ..delivery.models import AttemptRecord
from ..kafka.asyncconsumer import AsyncConsumer
from ..kafka.topics import DELIVERY_HISTORY, DELIVERY_LOG, INVALID_MAX_MESSAGE_BYTES
from ..pipeline.clients import (
    Producer,
    ProducerFactory,
    Record,
    kafka_producer,
    librdkafka_reading,
)
from ..pipeline.landing import land
from ..pipeline.records import Origin, quarantine_copy
from ..pipeline.stage import (
    COMMIT_INTERVAL_S,
    HANDLER_ATTEMPTS,
    HANDLER_BACKOFF_S,
    POLL_PAUSE_S,
    handler_failure,
)
from ..runtime.context import Runtime
from ..settings import Settings
from ..telemetry import metrics
from .table import Attempt, History
from .upgrade import LEGACY_GROUP, OffsetsUnknown, start_offsets

log = logging.getLogger(__name__)

#: The longest a lookup of where partitions start may take before it is asked again: an
#: answer that never comes would leave the partitions unread for good.
START_LOOKUP_S = 30.0
#: Records read (and their slots written) at a time. A batch is decoded and handed to the
#: producer in one turn of the event loop, about 40 us a record: catching up 625 at a time
#: held the deliveries' loop 39 ms, then 20 ms (a loop watchdog during `make bench` (b)).
BATCH = 200


class LogReader(Protocol):
    """What the feeder uses of its consumer (streams.kafka.asyncconsumer's, unsubscribed):
    assigned by hand, in no group's membership, committing to its group."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read exactly these partitions from these offsets; a record of a partition no
        longer assigned is not returned after this call."""
        ...

    def unassign(self) -> None: ...

    async def getmany(self, *, timeout_ms: int,
                      max_records: int) -> Mapping[TopicPartition, Sequence[Record]]: ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    async def beginning_offsets(
        self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]: ...


#: (settings, group id) -> an unstarted reader of the delivery log.
ReaderFactory: TypeAlias = Callable[[Settings, str], LogReader]
#: Partitions -> where to start reading each (streams.history.upgrade); raises
#: OffsetsUnknown or KafkaError while that cannot be told.
StartOffsets: TypeAlias = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


def kafka_reader(settings: Settings, group_id: str) -> LogReader:
    reader: LogReader = AsyncConsumer(
        librdkafka_reading(settings, group_id, read_ahead=4 * BATCH),
        callback_timeout_s=0)  # never subscribed: no rebalance callbacks
    return reader


class HistoryFeeder:
    group = "hookstream-history"

    def __init__(self, rt: Runtime, history: History, *,
                 reader_factory: ReaderFactory = kafka_reader,
                 producer_factory: ProducerFactory = kafka_producer,
                 start_offsets: StartOffsets | None = None) -> None:
        """`reader_factory`, `producer_factory` and `start_offsets` are the seams that
        tests/unit/test_history_feeder.py drives the loop through without Kafka."""
        self._rt = rt
        self._history = history
        s = rt.settings
        self._log = s.topic(DELIVERY_LOG)
        self._changelog = s.topic(DELIVERY_HISTORY)
        self._reader_factory = reader_factory
        self._producer_factory = producer_factory
        self._start_offsets = start_offsets or self._committed_or_legacy
        self._consumer: LogReader | None = None
        self._producer: Producer | None = None
        #: Asks where partitions start: made at the first ask, kept for the worker's life
        #: (a new admin client per rebalance fetched the cluster's metadata each time).
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None
        #: Held while a batch is written and committed, and while the partitions read
        #: change: a revocation waits for the batch under way.
        self._lock = asyncio.Lock()
        #: Log partitions this worker should read (its active table partitions), as faust
        #: last said; `_generation` counts its changes, so a change that came while the
        #: start offsets were looked up is not overtaken by them.
        self._wanted: frozenset[int] = frozenset()
        self._generation = 0
        self._changed = asyncio.Event()
        #: Per partition, the next offset to commit (its records' slots all landed).
        self._done: dict[TopicPartition, int] = {}
        rt.app.on_partitions_revoked.connect(self._on_revoked)
        rt.app.on_rebalance_complete.connect(self._on_rebalanced)

    def partitions(self) -> int:
        """How many partitions of the history this worker fills (for /readyz)."""
        return len(self._history.serving)

    def settled(self) -> bool:
        """Whether it fills what faust last gave this worker, so that the history answers
        in full (for /readyz: true too while faust gives it nothing)."""
        return not self._changed.is_set() and self._history.serving == self._wanted

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self._rt.settings
        producer = self._producer_factory(s)
        await producer.start()
        self._producer = producer
        consumer = self._reader_factory(s, f"{s.topic_prefix}{self.group}")
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # The batch under way lands and is committed first: cancelled halfway, its slots
        # would be written again by the next owner.
        async with self._lock:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if self._consumer is not None:
                await self._commit()
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
            if self._admin is not None:
                await self._admin.close()
            self._consumer = self._producer = self._task = self._admin = None

    # -- following faust's assignment -----------------------------------------------
    async def _on_revoked(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        """faust's group rebalances (and waits for this): nothing more is written here."""
        async with self._lock:
            self._want(frozenset())
            await self._commit()
            if self._consumer is not None and self._history.serving:
                self._consumer.unassign()
                log.info("history: partitions %s given up",
                         sorted(self._history.serving))
            self._history.serving = frozenset()

    async def _on_rebalanced(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        """faust has recovered the table: read what it holds (the loop does, so faust's
        recovery does not wait for a broker round trip of ours)."""
        actives = self._rt.app.assignor.assigned_actives()
        self._want(frozenset(tp.partition for tp in actives if tp.topic == self._changelog))

    def _want(self, partitions: frozenset[int]) -> None:
        self._wanted = partitions
        self._generation += 1
        self._changed.set()

    async def _committed_or_legacy(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        s = self._rt.settings
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
            try:
                await admin.start()
            except BaseException:
                await admin.close()  # made again at the next ask
                raise
            self._admin = admin
        return await start_offsets(self._consumer, self._admin,
                                   f"{s.topic_prefix}{self.group}",
                                   f"{s.topic_prefix}{LEGACY_GROUP}", tps)

    async def _follow(self, consumer: LogReader) -> None:
        """Read the wanted partitions from their start offsets (streams.history.upgrade),
        committed at once so that a quiet partition has one too."""
        self._changed.clear()
        generation = self._generation
        tps = [TopicPartition(self._log, p) for p in sorted(self._wanted)]
        starts: dict[TopicPartition, int] = {}
        delay = POLL_PAUSE_S
        while tps and generation == self._generation:
            try:
                async with asyncio.timeout(START_LOOKUP_S):
                    starts = await self._start_offsets(tps)
                break
            except (KafkaError, OffsetsUnknown, OSError, TimeoutError) as exc:
                log.warning("history: where to start reading is unknown yet (%s); asking "
                            "again in %.1fs", str(exc) or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        async with self._lock:
            if generation != self._generation:
                return  # faust changed its mind meanwhile: the loop follows again
            # The partitions read are the ones the history serves: one set, kept there.
            self._history.serving = frozenset(tp.partition for tp in tps)
            if not tps:
                consumer.unassign()
                return
            consumer.assign(starts)
            self._done = dict(starts)
            await self._commit()
            log.info("history: reading %s", ", ".join(
                f"{tp.topic}[{tp.partition}] from {offset}" for tp, offset in starts.items()))

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        while True:
            try:
                if self._changed.is_set():
                    await self._follow(consumer)
                    continue
                if not self._history.serving:
                    await self._changed.wait()
                    continue
                batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                async with self._lock:
                    for tp, records in batches.items():
                        # Fetched before a revocation: no longer ours to write.
                        if tp.partition in self._history.serving and records:
                            await self._feed(tp, records)
                            self._done[tp] = records[-1].offset + 1
                    if loop.time() >= next_commit:
                        await self._commit()
                        next_commit = loop.time() + COMMIT_INTERVAL_S
            except Exception:
                # The loop must not die: the history would stop with nobody told.
                log.exception("history: reading the delivery log failed; again in %.1fs",
                              POLL_PAUSE_S)
                await asyncio.sleep(POLL_PAUSE_S)

    async def _feed(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        """Every record's slot written, or the record quarantined; never raises."""
        decoded: list[tuple[Record, Attempt]] = []
        for record in records:
            value = record.value or b""
            try:
                decoded.append((record, Attempt(AttemptRecord.webhook_of(value), value,
                                                tp.partition)))
            except Exception as exc:  # the decoder's error, or any other: nothing may stop us
                detail = (str(exc) if isinstance(exc, ValueError)
                          else f"{type(exc).__name__}: {exc}")
                await self._quarantine(tp, record, f"invalid attempt record: {detail}")
        failed = await self._tried([attempt for _, attempt in decoded], tp)
        if failed is None:
            return
        # One by one, so that only the record it fails on is quarantined.
        for record, attempt in decoded:
            failed = await self._tried([attempt], tp)
            if failed is not None:
                log.error("%s[%d]@%d: its history slot cannot be written", tp.topic,
                          tp.partition, record.offset, exc_info=failed)
                metrics.HANDLER_FAILURES.labels(stage="history").inc()
                await self._quarantine(tp, record, handler_failure(HANDLER_ATTEMPTS, failed))

    async def _tried(self, attempts: list[Attempt], tp: TopicPartition) -> Exception | None:
        """Write these slots, tried as a stage's handler is; the last failure, if all failed.
        (A bug, or a record nobody foresaw: the broker's refusals are retried below.)"""
        failure: Exception | None = None
        for tried in range(1, HANDLER_ATTEMPTS + 1):
            try:
                await self._write(attempts)
                return None
            except Exception as exc:
                failure = exc
                if tried < HANDLER_ATTEMPTS:
                    log.warning("%s[%d]: writing %d history slots failed (%s: %s); trying "
                                "again", tp.topic, tp.partition, len(attempts),
                                type(exc).__name__, exc)
                    await asyncio.sleep(HANDLER_BACKOFF_S[tried - 1])
        return failure

    async def _write(self, attempts: list[Attempt]) -> None:
        assert self._producer is not None
        if attempts:
            await self._history.record(attempts, self._producer)

    async def _quarantine(self, tp: TopicPartition, record: Record, reason: str) -> None:
        assert self._producer is not None
        log.warning("quarantined %s[%d]@%d: %s", tp.topic, tp.partition, record.offset,
                    reason)
        metrics.INVALID.labels(
            topic=tp.topic.removeprefix(self._rt.settings.topic_prefix)).inc()
        copy = quarantine_copy(Origin(tp.topic, tp.partition, record.offset), record.key,
                               record.value or b"", reason, INVALID_MAX_MESSAGE_BYTES)
        await land(self._producer, self._rt.settings, [copy])

    async def _commit(self) -> None:
        """Commit what landed, on the partitions still held (under the lock)."""
        consumer = self._consumer
        if consumer is None or not self._done:
            return
        offsets = {tp: offset for tp, offset in self._done.items()
                   if tp.partition in self._history.serving}
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Not fatal: the slots are written, and `_done` is kept for the next
                # interval (nothing else writes it meanwhile: we hold the lock). Dropped,
                # a partition that then went quiet kept its older offset, behind for good.
                # At worst a crash before then records these attempts twice.
                log.warning("history: offset commit failed: %s", exc)
                return
        self._done = {}

