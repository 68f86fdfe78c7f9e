"""Fills the history table (streams.history.table) from hookstream.delivery-log, on the
partitions whose history this worker holds.

Why not a faust agent, as before: faust makes each record a message, an event, a queue
entry and an acknowledgement in Python, about 350 µs of CPU per attempt record. Under
`make bench` (a) that was a quarter of a loaded worker's CPU (1.51 CPU-s per 1,000
deliveries with the history, 1.16 with none at all), and the history fell 16 s behind the
deliveries it records. Here an aiokafka consumer reads up to 1,000 records a batch, as
the stages do.

Which partitions: the history table's, as faust's group assigns them (the API forwards a
webhook's history requests by the same assignment: Api.forwarded). Partition p of the
table holds the webhooks whose attempts are on partition p of the log, so the consumer is
assigned log partition p by hand whenever faust's group makes this worker the table's
owner for p, once faust has recovered the table (`on_rebalance_complete`); and it gives
up all of them when that group rebalances (`on_partitions_revoked`): the batch under way
lands and is committed first, and faust's rebalance waits for that. So one worker at a
time writes a webhook's slots, as with the agent.

Offsets are committed in a group of their own (`hookstream-history`), which no member
joins: a committed offset is one whose records' slots all landed (History.record), so a
crash loses no attempt. A partition that group has no offset for starts where faust's group
had got to (the history's readers before this change), else at the log's beginning.

A record that is no attempt record goes to hookstream.invalid with the reason, like every
other topic's, and the history goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ..delivery.models import AttemptRecord
from ..kafka.topics import DELIVERY_HISTORY, DELIVERY_LOG, INVALID_MAX_MESSAGE_BYTES
from ..pipeline.clients import Producer, Record, kafka_producer, until_landed
from ..pipeline.records import Origin, encoded_key, quarantine_copy
from ..pipeline.stage import (
    COMMIT_INTERVAL_S,
    HANDLER_ATTEMPTS,
    HANDLER_BACKOFF_S,
    POLL_PAUSE_S,
    handler_failure,
)
from ..runtime.context import Runtime
from ..telemetry import metrics
from .table import Attempt, History

log = logging.getLogger(__name__)

#: Records read (and their slots written) at a time.
BATCH = 1000
#: The consumer group whose offsets said how far the history had got before this module.
LEGACY_GROUP = "hookstream"


class HistoryFeeder:
    group = "hookstream-history"

    def __init__(self, rt: Runtime, history: History) -> None:
        self._rt = rt
        self._history = history
        s = rt.settings
        self._log = s.topic(DELIVERY_LOG)
        self._changelog = s.topic(DELIVERY_HISTORY)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: Producer | None = None
        self._task: asyncio.Task[None] | None = None
        #: Held while a batch is written, and while the assignment changes: a revocation
        #: waits for the batch under way.
        self._lock = asyncio.Lock()
        #: Log partitions this worker should read (its active table partitions).
        self._wanted: frozenset[int] = frozenset()
        self._assigned = asyncio.Event()
        #: Per partition, the next offset to commit (its records' slots all landed).
        self._done: dict[TopicPartition, int] = {}
        rt.app.on_partitions_revoked.connect(self._on_revoked)
        rt.app.on_rebalance_complete.connect(self._on_rebalanced)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self._rt.settings
        self._producer = kafka_producer(s)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=f"{s.topic_prefix}{self.group}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH)
        await self._consumer.start()
        async with self._lock:
            await self._apply()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            if self._consumer is not None:
                await self._commit()
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
            self._consumer = self._producer = self._task = None

    # -- following faust's assignment -----------------------------------------------
    async def _on_revoked(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        async with self._lock:
            self._wanted = frozenset()
            await self._apply()

    async def _on_rebalanced(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        actives = self._rt.app.assignor.assigned_actives()
        async with self._lock:
            self._wanted = frozenset(tp.partition for tp in actives
                                     if tp.topic == self._changelog)
            await self._apply()

    async def _apply(self) -> None:
        """Read the wanted partitions (under the lock; nothing before start)."""
        consumer = self._consumer
        if consumer is None:
            return
        held = {tp.partition for tp in consumer.assignment()}
        if held == self._wanted:
            return
        await self._commit()
        tps = [TopicPartition(self._log, p) for p in sorted(self._wanted)]
        consumer.assign(tps)
        self._done = {}
        if not tps:
            self._assigned.clear()
            return
        for tp, offset in (await self._legacy_offsets(consumer, tps)).items():
            consumer.seek(tp, offset)
        self._assigned.set()

    async def _legacy_offsets(self, consumer: AIOKafkaConsumer,
                              tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where faust's group had got to, for the partitions this group has no offset for."""
        fresh = [tp for tp in tps if await consumer.committed(tp) is None]
        if not fresh:
            return {}
        s = self._rt.settings
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
        try:
            await admin.start()
            found = await admin.list_consumer_group_offsets(
                f"{s.topic_prefix}{LEGACY_GROUP}", partitions=fresh)
        except KafkaError as exc:
            log.warning("the history's offsets before this release are unreadable (%s); "
                        "reading the delivery log from its beginning", exc)
            return {}
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        while True:
            await self._assigned.wait()
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=BATCH)
            except Exception:
                log.exception("history: polling failed; polling again in %.1fs",
                              POLL_PAUSE_S)
                await asyncio.sleep(POLL_PAUSE_S)
                continue
            async with self._lock:
                # Fetched before a revocation: no longer ours to write.
                held = self._consumer.assignment()
                for tp, records in batches.items():
                    if tp in held and records:
                        await self._feed(tp, records)
                        self._done[tp] = records[-1].offset + 1
                if loop.time() >= next_commit:
                    await self._commit()
                    next_commit = loop.time() + COMMIT_INTERVAL_S

    async def _feed(self, tp: TopicPartition, records: list[Record]) -> None:
        """Every record's slot written, or the record quarantined; never raises."""
        decoded: list[tuple[Record, Attempt]] = []
        for record in records:
            value = record.value or b""
            try:
                decoded.append((record, Attempt(AttemptRecord.decode(value), value,
                                                tp.partition)))
            except Exception as exc:  # the decoder's error, or any other: nothing may stop us
                detail = (str(exc) if isinstance(exc, ValueError)
                          else f"{type(exc).__name__}: {exc}")
                await self._quarantine(tp, record, f"invalid attempt record: {detail}")
        for tried in range(1, HANDLER_ATTEMPTS + 1):
            try:
                await self._write([attempt for _, attempt in decoded])
                return
            except Exception as exc:
                # A bug or a record nobody foresaw: tried again as a stage's handler is...
                log.warning("%s[%d]: the history's batch failed (%s: %s)", tp.topic,
                            tp.partition, type(exc).__name__, exc)
                if tried < HANDLER_ATTEMPTS:
                    await asyncio.sleep(HANDLER_BACKOFF_S[tried - 1])
        # ...then one by one, so that only the record it fails on is quarantined.
        for record, attempt in decoded:
            try:
                await self._write([attempt])
            except Exception as exc:
                log.exception("%s[%d]@%d: its history slot cannot be written", tp.topic,
                              tp.partition, record.offset)
                metrics.HANDLER_FAILURES.labels(stage="history").inc()
                await self._quarantine(tp, record, handler_failure(HANDLER_ATTEMPTS + 1, exc))

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
        producer, topic = self._producer, self._rt.settings.topic(copy.topic)

        def send() -> Any:
            return producer.send(topic, value=copy.value, key=encoded_key(copy),
                                 headers=list(copy.headers))

        await until_landed(send(), send, "to hookstream.invalid")

    async def _commit(self) -> None:
        """Commit what landed, on the partitions still held (under the lock)."""
        consumer = self._consumer
        if consumer is None or not self._done:
            return
        held = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._done.items() if tp in held}
        self._done = {}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Not fatal: the slots are written; at worst a crash before the next commit
            # records these attempts twice (as the agent's interval commits did).
            log.warning("history: offset commit failed: %s", exc)

