"""The delivery stage: consume jobs and due retries, attempt them concurrently, route
each outcome (streams.delivery.routing), log every attempt.

Its own consumer group (`<prefix>hookstream-delivery`) so that offsets can follow the
outcome of each job, not the order jobs were read in:
- a job's offset becomes committable only after its attempt record is acknowledged by all
  in-sync replicas (OffsetTracker), so a kill -9 at any moment loses no delivery;
- attempts run concurrently under two bounds: `delivery_concurrency` in the whole worker
  and `per_webhook_concurrency` per webhook, so one slow endpoint holds at most its own
  slots and everyone else's deliveries go on;
- a partition with too many jobs in flight is paused (not the others), which bounds memory;
- a retry partition whose head record is not yet due is paused until it is (the record is
  sought back to, so it is read again then). One delay per retry topic keeps each of its
  partitions in due order, so waiting at the head is exact. The consumer keeps polling, so
  it keeps its group membership through a 30-minute wait, and other partitions flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from ..schemas import SchemaError
from ..settings import Settings
from ..subscriptions.view import SubscriptionsView
from ..timeutil import now_ms
from ..topics import DELIVERIES, RETRY_TOPICS
from .client import create_client
from .models import WEBHOOK_DELETED, WEBHOOK_DISABLED, DeliveryJob
from .offsets import OffsetTracker
from .routing import (
    DUE_AT_HEADER,
    Origin,
    Produce,
    after_attempt,
    quarantined,
    undeliverable,
)
from .sender import attempt

log = logging.getLogger(__name__)

#: Jobs in flight per partition before it is paused; resumed below half of it.
MAX_IN_FLIGHT_PER_PARTITION = 1000
COMMIT_INTERVAL_S = 1.0


class DeliveryWorker:
    def __init__(self, settings: Settings, view: SubscriptionsView) -> None:
        self.settings = settings
        self.view = view
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = defaultdict(set)
        self._paused: set[TopicPartition] = set()  # too much in flight
        self._held: dict[TopicPartition, asyncio.TimerHandle] = {}  # head not yet due
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        self._per_webhook: dict[str, asyncio.Semaphore] = {}
        self._per_webhook_users: dict[str, int] = defaultdict(int)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._client: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._retry_topics = {settings.topic(t) for t in RETRY_TOPICS}

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._client = create_client(s)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, acks="all", enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=f"{s.topic_prefix}hookstream-delivery",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=500,
            # Attempts finish within delivery_timeout; a rebalance waits for them.
            rebalance_timeout_ms=int((s.delivery_timeout + 30) * 1000),
        )
        self._consumer.subscribe([s.topic(DELIVERIES), *sorted(self._retry_topics)],
                                 listener=_Rebalance(self))
        await self._consumer.start()
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._drain(list(self._trackers))
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._client is not None:
            await self._client.aclose()

    def assigned_count(self) -> int:
        return len(self._consumer.assignment()) if self._consumer is not None else 0

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        await self.view.ready.wait()
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic in self._retry_topics and self._hold_if_not_due(tp, record):
                        break  # the rest of this partition is due later still
                    self._spawn(tp, record)
            if loop.time() >= next_commit:
                await self._commit()
                next_commit = loop.time() + COMMIT_INTERVAL_S

    def _hold_if_not_due(self, tp: TopicPartition,
                         record: ConsumerRecord[bytes, bytes]) -> bool:
        due = _due_at(record)
        wait_s = (due - now_ms()) / 1000 if due is not None else 0.0
        if wait_s <= 0:
            return False
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._consumer.seek(tp, record.offset)  # read it again when due
        self._held[tp] = asyncio.get_running_loop().call_later(wait_s, self._release, tp)
        return True

    def _release(self, tp: TopicPartition) -> None:
        self._held.pop(tp, None)
        self._resume_if_free(tp)

    def _resume_if_free(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        if tp not in self._held and tp not in self._paused and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    def _spawn(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        tracker = self._trackers.setdefault(tp, OffsetTracker())
        tracker.started(record.offset)
        task = asyncio.create_task(self._handle(tp, record))
        self._tasks[tp].add(task)
        task.add_done_callback(self._tasks[tp].discard)
        if len(tracker) >= MAX_IN_FLIGHT_PER_PARTITION and tp not in self._paused:
            assert self._consumer is not None
            self._consumer.pause(tp)
            self._paused.add(tp)

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        origin = Origin(tp.topic, tp.partition, record.offset)
        try:
            job = DeliveryJob.decode(record.value or b"")
        except SchemaError as exc:
            log.warning("quarantined %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
            await self._produce_all([quarantined(origin, record.key, record.value or b"",
                                                 f"invalid delivery job: {exc}")])
        else:
            try:
                await self._deliver(job, origin)
            except Exception:
                # A bug, not a receiver's fault. Leave the offset uncommitted: the job is
                # repeated after a restart rather than lost.
                log.exception("delivery %s crashed; its offset stays uncommitted",
                              job.delivery_id)
                return
        self._finished(tp, record.offset)

    def _finished(self, tp: TopicPartition, offset: int) -> None:
        tracker = self._trackers.get(tp)
        if tracker is None:
            return  # revoked meanwhile; the new owner repeats this job
        tracker.done(offset)
        if tp in self._paused and len(tracker) < MAX_IN_FLIGHT_PER_PARTITION // 2:
            self._paused.discard(tp)
            self._resume_if_free(tp)

    async def _deliver(self, job: DeliveryJob, origin: Origin) -> None:
        sub = self.view.index.get(job.webhook_id)
        if sub is None or not sub.active:
            reason = WEBHOOK_DELETED if sub is None else WEBHOOK_DISABLED
            log.info("delivery %s to webhook %s dead-lettered: %s", job.delivery_id,
                     job.webhook_id, reason)
            await self._produce_all(undeliverable(job, reason, origin, now_ms()))
            return
        assert self._client is not None
        async with self._webhook_slot(job.webhook_id), self._slots:
            outcome = await attempt(
                self._client, sub, job, timeout=self.settings.delivery_timeout,
                allow_insecure=self.settings.allow_insecure_targets,
            )
        log.info("delivery %s to webhook %s attempt %d: %s %s %dms", job.delivery_id,
                 job.webhook_id, outcome.attempt, "success" if outcome.ok else "failed",
                 outcome.response_code or outcome.error, outcome.response_time_ms)
        await self._produce_all(after_attempt(job, outcome, self.settings.retry_delays, origin))

    async def _produce_all(self, records: list[Produce]) -> None:
        await asyncio.gather(*(self._durably_send(r) for r in records))

    @contextlib.asynccontextmanager
    async def _webhook_slot(self, webhook_id: str):  # type: ignore[no-untyped-def]
        semaphore = self._per_webhook.get(webhook_id)
        if semaphore is None:
            semaphore = self._per_webhook[webhook_id] = asyncio.Semaphore(
                self.settings.per_webhook_concurrency)
        self._per_webhook_users[webhook_id] += 1
        try:
            async with semaphore:
                yield
        finally:
            self._per_webhook_users[webhook_id] -= 1
            if not self._per_webhook_users[webhook_id]:
                del self._per_webhook_users[webhook_id]
                del self._per_webhook[webhook_id]

    async def _durably_send(self, record: Produce) -> None:
        """Produce with acks=all, retrying until it lands: the job is not done before."""
        assert self._producer is not None
        topic = self.settings.topic(record.topic)
        delay = 0.5
        while True:
            try:
                await self._producer.send_and_wait(
                    topic, value=record.value, key=record.key.encode(),
                    headers=list(record.headers) or None)
                return
            except KafkaError as exc:
                log.warning("producing to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- offsets ---------------------------------------------------------------------
    async def _commit(self, only: list[TopicPartition] | None = None) -> None:
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
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Not fatal: the jobs stay done; at worst they are delivered again after a crash.
            log.warning("offset commit failed: %s", exc)
            return
        for tp, offset in offsets.items():
            self._trackers[tp].committed = offset

    async def _drain(self, tps: list[TopicPartition]) -> None:
        """Let in-flight jobs of these partitions finish (bounded), commit, and forget them."""
        tasks = [t for tp in tps for t in self._tasks.get(tp, ())]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.delivery_timeout + 5)
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


def _due_at(record: ConsumerRecord[bytes, bytes]) -> int | None:
    for key, value in record.headers or ():
        if key == DUE_AT_HEADER:
            try:
                return int(value)
            except ValueError:
                return None  # unreadable: attempt now rather than hold forever
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker._drain(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None
