"""A pipeline stage: one consumer group, records handled concurrently, offsets that follow
outcomes. The fan-out and delivery stages are subclasses that only say what a record means.

Why not faust agents for these two: offsets must follow outcomes, not reading order, and
retry partitions must pause until due. And in our kill tests a faust agent restarted onto a
backlog stopped consuming while its producer flush never returned, never committing again
(the class of faust-streaming#175/#640). So the high-volume stages run on Kafka clients of
their own:

- a record's offset becomes committable only after everything its handler produced is
  acknowledged by all in-sync replicas (OffsetTracker), so a kill -9 at any moment loses
  nothing: whatever was not committed is handled again, with the same ids;
- a partition with too many records in flight is paused alone, which bounds memory;
- a subclass may hold a partition until its head record is due (`wait_before`): the
  partition is paused and sought back to that record, while the consumer keeps polling and
  so keeps its group membership, and other partitions flow;
- on rebalance, in-flight records of revoked partitions get a bounded time to finish, then
  what is done is committed;
- no record can stall a partition: a handler that raises (a bug, or a record nobody
  foresaw; bad input is quarantined by the handlers themselves) is tried HANDLER_ATTEMPTS
  times, then its record is quarantined with the reason and done, so the committed offset
  moves past it (`hookstream_handler_failures_total`). Only the broker being away holds a
  record: producing retries until it lands.

The stage is handed its Kafka clients by factories (`consumer_factory`, `producer_factory`),
as arroyo's StreamProcessor is handed its consumer: `Consumer` and `Producer` below are all
it uses of them (streams.pipeline.clients). By default both are librdkafka's
(`kafka_consumer`: streams.kafka.asyncconsumer; `kafka_producer`); streams.pipeline.local
is an in-memory broker with the same surface, on which tests/unit/test_stage_loop.py
drives this loop without Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Collection

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from ..kafka.topics import INVALID_MAX_MESSAGE_BYTES
from ..settings import Settings
from ..telemetry import metrics
from .clients import (
    Consumer,
    ConsumerFactory,
    Producer,
    ProducerFactory,
    Record,
    kafka_consumer,
    kafka_producer,
)
from .landing import land
from .offsets import OffsetTracker
from .records import Origin, Produce, quarantine_copy

log = logging.getLogger(__name__)

#: Records in flight per partition before it is paused; resumed below half of it.
MAX_IN_FLIGHT_PER_PARTITION = 1000
COMMIT_INTERVAL_S = 1.0
#: Tries of a handler that raises, and the pauses between them: a second try rules out
#: a passing fault (a table read during a rebalance), a third after a longer pause a
#: slower one; beyond that the record is quarantined. A few seconds at most, and only
#: for that record: the rest of its partition is handled meanwhile.
HANDLER_ATTEMPTS = 3
HANDLER_BACKOFF_S = (0.2, 1.0)
#: After a poll fails (the consumer, not a record), the pause before the next one.
POLL_PAUSE_S = 1.0


def handler_failure(attempts: int, exc: BaseException) -> str:
    """The reason a record is quarantined with after its handler raised `attempts` times."""
    return f"handler failed after {attempts} attempts: {type(exc).__name__}: {exc}"


class Stage:
    #: Consumer group, after the deployment's topic prefix.
    group: str = ""

    def __init__(self, settings: Settings, topics: list[str], drain_timeout: float, *,
                 consumer_factory: ConsumerFactory = kafka_consumer,
                 producer_factory: ProducerFactory = kafka_producer) -> None:
        self.settings = settings
        self._topics = topics
        self._drain_timeout = drain_timeout
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = defaultdict(set)
        self._paused: set[TopicPartition] = set()  # too much in flight
        self._held: dict[TopicPartition, asyncio.TimerHandle] = {}  # head not yet due
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None

    # -- what subclasses say -----------------------------------------------------------
    async def handle(self, record: Record, origin: Origin) -> list[Produce]:
        """What to produce for this record; bad input is quarantined (`quarantine`), not
        raised. Raising is for the unforeseen: tried again, then quarantined anyway."""
        raise NotImplementedError

    def wait_before(self, tp: TopicPartition, record: Record) -> float:
        """Seconds until this record may be handled (0: now)."""
        return 0.0

    async def ready(self) -> None:
        """Returns when the stage may start handling records."""

    @property
    def name(self) -> str:
        """The stage in metrics and logs: `fanout`, `delivery`."""
        return self.group.removeprefix("hookstream-")

    def quarantine(self, record: Record, origin: Origin, reason: str) -> Produce:
        """The hookstream.invalid record that keeps this input as it came, with why."""
        return quarantine_copy(origin, record.key, record.value or b"", reason,
                               INVALID_MAX_MESSAGE_BYTES)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._producer = self._producer_factory(s)
        await self._producer.start()
        self._consumer = self._consumer_factory(s, f"{s.topic_prefix}{self.group}",
                                                self._drain_timeout)
        self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        await self._consumer.start()
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._committing is not None:
            # A background commit is answered through a poll, and none follows now; the
            # drain below commits its offsets, or newer ones, and waits for that answer.
            self._committing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committing
        if self._consumer is not None:
            await self._drain(list(self._trackers))
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    def assigned_count(self) -> int:
        return len(self._consumer.assignment()) if self._consumer is not None else 0

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        await self.ready()
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
            except Exception:
                # The loop must not die: its partitions would stay assigned and unread.
                log.exception("%s stage: polling failed; polling again in %.1fs",
                              self.name, POLL_PAUSE_S)
                await asyncio.sleep(POLL_PAUSE_S)
                continue
            for tp, records in batches.items():
                for record in records:
                    wait_s = self._wait_s(tp, record)
                    if wait_s > 0:
                        self._hold(tp, record, wait_s)
                        break  # one delay per topic: the rest are due later still
                    if self._spawn(tp, record):
                        # Full: the rest of this batch is read again once it resumes, so
                        # the bound holds (not bound + one poll's worth of records).
                        self._consumer.seek(tp, record.offset + 1)
                        break
            if loop.time() >= next_commit and (self._committing is None
                                               or self._committing.done()):
                # Not awaited here: while a commit's answer is on its way (8-41 ms on the
                # development machine: Kafka 4's group coordinator lingers 5 ms to batch
                # its writes) nothing would take the records already fetched, and the
                # fetcher asks for no more of a partition until they are taken.
                self._committing = asyncio.create_task(self._commit_in_background())
                next_commit = loop.time() + COMMIT_INTERVAL_S

    def _wait_s(self, tp: TopicPartition, record: Record) -> float:
        try:
            return self.wait_before(tp, record)
        except Exception:
            # Whatever its headers hold, a record is handled rather than held for ever.
            log.exception("%s[%d]@%d: cannot tell when it is due; handling it now",
                          tp.topic, tp.partition, record.offset)
            return 0.0

    def _hold(self, tp: TopicPartition, record: Record, wait_s: float) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._consumer.seek(tp, record.offset)  # read it again when due
        self._held[tp] = asyncio.get_running_loop().call_later(wait_s, self._release, tp)

    def _release(self, tp: TopicPartition) -> None:
        self._held.pop(tp, None)
        self._resume_if_free(tp)

    def _resume_if_free(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        if tp not in self._held and tp not in self._paused and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    def _spawn(self, tp: TopicPartition, record: Record) -> bool:
        """Start handling `record`; True if that filled its partition (now paused)."""
        tracker = self._trackers.get(tp)
        if tracker is None:
            tracker = self._trackers[tp] = OffsetTracker()
        tracker.started(record.offset)
        task = asyncio.create_task(self._handle(tp, record))
        self._tasks[tp].add(task)
        task.add_done_callback(self._tasks[tp].discard)
        if len(tracker) >= MAX_IN_FLIGHT_PER_PARTITION and tp not in self._paused:
            assert self._consumer is not None
            self._consumer.pause(tp)
            self._paused.add(tp)
            return True
        return False

    async def _handle(self, tp: TopicPartition, record: Record) -> None:
        origin = Origin(tp.topic, tp.partition, record.offset)
        for attempt in range(1, HANDLER_ATTEMPTS + 1):
            try:
                await self.produce_all(await self.handle(record, origin))
                break
            except Exception as exc:
                # A bug or an unforeseen record, not bad input (handlers quarantine that).
                if attempt < HANDLER_ATTEMPTS:
                    log.warning("%s[%d]@%d: handler failed (%s: %s); trying again",
                                tp.topic, tp.partition, record.offset, type(exc).__name__, exc)
                    await asyncio.sleep(HANDLER_BACKOFF_S[attempt - 1])
                    continue
                reason = handler_failure(attempt, exc)
                log.error("%s[%d]@%d quarantined: %s", tp.topic, tp.partition, record.offset,
                          reason, exc_info=exc)
                metrics.HANDLER_FAILURES.labels(stage=self.name).inc()
                try:
                    await self.produce_all([self.quarantine(record, origin, reason)])
                except Exception:
                    # Only a broken producer gets here; the record is handled again after
                    # a restart rather than lost.
                    log.exception("%s[%d]@%d: cannot quarantine; its offset stays "
                                  "uncommitted", tp.topic, tp.partition, record.offset)
                    return
        tracker = self._trackers.get(tp)
        if tracker is None:
            return  # revoked meanwhile; the new owner repeats this record
        tracker.done(record.offset)
        if tp in self._paused and len(tracker) < MAX_IN_FLIGHT_PER_PARTITION // 2:
            self._paused.discard(tp)
            self._resume_if_free(tp)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Told of the partitions just assigned, before any of their records is read."""

    async def produce_all(self, records: list[Produce]) -> None:
        """Produce with acks=all, each retried until it lands (streams.pipeline.landing):
        the records are not done before. A record over its topic's limit raises
        RecordTooLarge before any is sent."""
        assert self._producer is not None
        await land(self._producer, self.settings, records)

    # -- offsets ---------------------------------------------------------------------
    async def _commit_in_background(self) -> None:
        """The loop's periodic commit, one at a time, in the background (answered through a
        later poll). A drain commits on its own meanwhile, waiting for the answer: the
        client sends commits in turn, so the drain's newer offsets land last, unless the
        client must send this one again (a retriable error, such as the group coordinator
        moving) and the drain's lands first. Then the committed offset is up to one
        interval older than what was done: the next owner reads that again, and the
        delivery stage's duplicate guard skips what already has an outcome."""
        try:
            await self._commit(background=True)
        except Exception:
            # Not fatal either: the next interval commits again.
            log.exception("%s stage: committing offsets failed", self.name)

    async def _commit(self, only: list[TopicPartition] | None = None, *,
                      background: bool = False) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        assigned = self._consumer.assignment()
        for tp, tracker in self._trackers.items():
            if (only is None or tp in only) and tp in assigned:
                offset = tracker.committable()
                if offset is not None:
                    offsets[tp] = offset
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets, background=background)
        except KafkaError as exc:
            # Not fatal: the work stays done; at worst it is repeated after a crash.
            log.warning("offset commit failed: %s", exc)
            return
        for tp, offset in offsets.items():
            # A drain may have forgotten the partition while the commit was awaited
            # (test_stage_loop.py: test_a_partition_revoked_while_its_commit_is_answered...).
            kept = self._trackers.get(tp)
            if kept is not None:
                kept.committed = offset

    def hand_back(self, tps: list[TopicPartition]) -> None:
        """Before these partitions are drained: stop what has not begun, so that it is
        left uncommitted for their next owner rather than begun now (default: nothing)."""

    async def _drain(self, tps: list[TopicPartition]) -> None:
        """Let in-flight records of these partitions finish (bounded), commit, forget them."""
        self.hand_back(tps)
        tasks = [t for tp in tps for t in self._tasks.get(tp, ())]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._drain_timeout)
            for task in pending:
                task.cancel()
        await self._commit(tps)
        for tp in tps:
            self._trackers.pop(tp, None)
            self._tasks.pop(tp, None)
            self._paused.discard(tp)
            timer = self._held.pop(tp, None)
            if timer is not None:
                timer.cancel()


class _Rebalance:
    """The stage's RebalanceListener (streams.kafka.asyncconsumer)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.stage._drain(list(revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self.stage.on_assigned(list(assigned))
