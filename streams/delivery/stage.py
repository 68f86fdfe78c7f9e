"""The delivery stage: jobs and due retries in, signed POSTs out, each outcome routed
(streams.delivery.routing) and logged.

Attempts run concurrently under three bounds: `delivery_concurrency` in the whole worker,
shared fairly between workspaces with at most `per_workspace_concurrency` each
(streams.delivery.fairness), and `per_webhook_concurrency` per webhook, so one slow
endpoint holds at most its own slots, one tenant's flood at most its share, and everyone
else's deliveries go on; and a job that cannot have its slots soon, because its webhook
lags or its workspace is at its cap, is parked on the first retry topic
(streams.delivery.pressure), so its queue never pauses the partition it shares with others.
A webhook with a rate limit (its own, or the deployment's default) has its sends spaced
(streams.delivery.ratelimit); a job whose turn is too far off is parked the same way.
A retry partition whose head job is not yet due is held (paused) until it is: one delay
per retry topic keeps each of its partitions in due order.
A due time is what the job's header says, but never later than the topic's delay after
the broker appended the record (`hold_until`), so a forged far-future due time cannot hold
a partition for longer than one honest retry would. A retry whose receiver asked for a
longer wait (Retry-After) is read then, still not due, and parked again with its due time,
unattempted (streams.delivery.routing.repark), so the wait is honoured without holding
anyone else's retries behind it.
Each webhook's consecutive failed attempts are counted here (streams.delivery.failing): at
50% and 90% of HOOKSTREAM_FAILURE_LIMIT a `webhook.failing` event is published with the
attempt's outcome, at the limit the webhook is disabled (streams.delivery.operations).
Failed attempts of operational events do not count; any success resets the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from aiokafka import TopicPartition

from ..core import catalog
from ..core.schemas import SchemaError
from ..core.secretbox import SecretBox
from ..core.timeutil import now_ms, parse_iso
from ..kafka.topics import DELIVERIES, DELIVERY_LOG, RETRY_TOPICS
from ..pipeline.clients import (
    ConsumerFactory,
    ProducerFactory,
    Record,
    TailFactory,
    kafka_consumer,
    kafka_producer,
    kafka_tail,
)
from ..pipeline.records import Origin, Produce
from ..pipeline.stage import Stage
from ..settings import Settings
from ..subscriptions.model import Subscription
from ..subscriptions.view import SubscriptionsView
from ..telemetry import metrics
from . import operations
from .client import DeliveryClient
from .duplicates import DuplicateGuard
from .failing import LIMIT, FailureCounter
from .fairness import FairSlots
from .models import (
    DEAD,
    DISABLED,
    SUCCESS,
    WEBHOOK_DELETED,
    WEBHOOK_DISABLED,
    DeliveryJob,
    Outcome,
)
from .pressure import WebhookLoad
from .ratelimit import RateLimiter
from .routing import (
    DUE_AT_HEADER,
    after_attempt,
    dead_reason,
    deferred,
    repark,
    undeliverable,
    verdict,
)
from .sender import attempt
from .slots import Slots

log = logging.getLogger(__name__)


class DeliveryWorker(Stage):
    group = "hookstream-delivery"

    def __init__(self, settings: Settings, view: SubscriptionsView, *, box: SecretBox,
                 transport: httpx.AsyncBaseTransport | None = None,
                 consumer_factory: ConsumerFactory = kafka_consumer,
                 producer_factory: ProducerFactory = kafka_producer,
                 tail_factory: TailFactory = kafka_tail) -> None:
        """`box` opens sealed webhook secrets (the runtime's, built once from the settings);
        `transport` carries the POSTs (default: DeliveryClient's own, with its rules);
        `tail_factory` reads the delivery log's newest outcomes (streams.delivery.duplicates)."""
        #: Each retry topic's delay, by its prefixed name (settings insist on one per topic).
        self._retry_delays = {settings.topic(t): delay
                              for t, delay in zip(RETRY_TOPICS, settings.retry_delays,
                                                  strict=True)}
        super().__init__(settings, [settings.topic(DELIVERIES), *sorted(self._retry_delays)],
                         drain_timeout=settings.delivery_timeout + 5,
                         consumer_factory=consumer_factory, producer_factory=producer_factory)
        self.view = view
        self._slots = FairSlots(settings.delivery_concurrency,
                                settings.per_workspace_concurrency)
        self._per_webhook: dict[str, Slots] = {}
        self._load = WebhookLoad(settings.per_webhook_concurrency, settings.defer_after)
        self._rates = RateLimiter()
        self._transport = transport
        self._client: DeliveryClient | None = None
        self._box = box
        self.guard = DuplicateGuard(settings, tail_factory)
        #: Consecutive failed attempts of the webhooks whose partitions this worker owns.
        self.failures = FailureCounter(settings.failure_limit)
        #: Per partition, the tasks of jobs waiting for their slots (not yet attempted).
        self._waiting: defaultdict[TopicPartition, set[asyncio.Task[Any]]] = defaultdict(set)

    async def start(self) -> None:
        self._client = DeliveryClient(self.settings, transport=self._transport)
        await self.guard.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.guard.stop()
        if self._client is not None:
            await self._client.aclose()

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        # Deliveries and retry topics are keyed by webhook like the log: partition p of
        # each holds jobs whose outcomes are on log partition p.
        await self.guard.assigned(assigned)
        self.failures.retain(tp.partition for tp in assigned)

    async def produce_all(self, records: list[Produce]) -> None:
        # The outcome last: a logged outcome then means its retry or dead letter landed,
        # so the guard of whoever reads the log next may trust it.
        await super().produce_all([r for r in records if r.topic != DELIVERY_LOG])
        await super().produce_all([r for r in records if r.topic == DELIVERY_LOG])

    async def ready(self) -> None:
        await self.view.ready.wait()

    def wait_before(self, tp: TopicPartition, record: Record) -> float:
        delay = self._retry_delays.get(tp.topic)
        if delay is None:
            return 0.0
        now = now_ms()
        return max(0, hold_until(record, delay, now) - now) / 1000

    async def handle(self, record: Record, origin: Origin) -> list[Produce]:
        try:
            job = DeliveryJob.decode(record.value or b"")
        except SchemaError as exc:  # InvalidJob too: decodes, but must not be attempted
            log.warning("quarantined %s[%d]@%d: %s", origin.topic, origin.partition,
                        origin.offset, exc)
            metrics.INVALID.labels(
                topic=origin.topic.removeprefix(self.settings.topic_prefix)).inc()
            return [self.quarantine(record, origin, f"invalid delivery job: {exc}")]
        stage = metrics.stage_of(origin.topic)
        async with self.guard.claim(origin.partition, job) as fresh:
            if not fresh:
                log.info("delivery %s to webhook %s attempt %d: already has an outcome; "
                         "skipped", job.delivery_id, job.webhook_id, job.attempt,
                         extra=_ids(job))
                metrics.SKIPPED_DUPLICATE.inc()
                return []
            # A retry's due time, as its hold read it (None on the deliveries topic).
            due = (_due(record, job) if origin.topic in self._retry_delays else None)
            produced = await self._deliver(job, origin, stage, due)
            if any(p.topic == DELIVERY_LOG for p in produced):  # dead-lettered unattempted
                # Known once durable: a dead letter that can never land (over its topic's
                # limit) must fail every try of this handler, not pass the second as done.
                await self.produce_all(produced)
                self.guard.handled(origin.partition, job)
                return []
            return produced

    async def _deliver(self, job: DeliveryJob, origin: Origin, stage: str,
                       due: int | None) -> list[Produce]:
        """What becomes of the job: a dead letter or a parked copy (returned, for the stage
        to produce), or an attempt, whose outcome is produced here (nothing returned).
        `due` is a retry's due time: one its topic's hold ended before (a Retry-After
        longer than the topic's delay) is parked again (routing.repark)."""
        sub = self.view.index.get(job.webhook_id)
        if sub is None or not sub.active:
            reason = WEBHOOK_DELETED if sub is None else WEBHOOK_DISABLED
            log.info("delivery %s to webhook %s dead-lettered: %s", job.delivery_id,
                     job.webhook_id, reason, extra=_ids(job))
            metrics.delivered(DISABLED if sub else DEAD, stage).inc()
            metrics.DEAD_LETTERS.labels(reason=reason).inc()
            return undeliverable(job, reason, origin, now_ms())
        parked = repark(job, due, self.settings.retry_delays, now_ms())
        if parked:
            log.info("delivery %s to webhook %s attempt %d: parked again on %s until %s, as "
                     "its receiver asked", job.delivery_id, job.webhook_id, job.attempt,
                     parked[0].topic, dict(parked[0].headers)[DUE_AT_HEADER].decode(),
                     extra=_ids(job))
            metrics.REPARKED.inc()
            return parked
        assert self._client is not None
        tp = TopicPartition(origin.topic, origin.partition)
        task = asyncio.current_task()
        assert task is not None
        limit = sub.rate_limit or self.settings.default_rate_limit
        if limit:
            # Its turn first, holding nothing: a job waiting for its rate limit keeps no
            # slot from anyone (and is handed back on a rebalance like one waiting for one).
            now = _clock()
            if self._rates.wait(job.webhook_id, limit, now) > self.settings.defer_after:
                return self._defer(job, f"its rate limit ({limit}/s) is reached")
            self._waiting[tp].add(task)
            try:
                await asyncio.sleep(self._rates.reserve(job.webhook_id, limit, now))
            finally:
                self._waiting.get(tp, set()).discard(task)
        if not self._load.admit(job.webhook_id, _clock()):
            return self._defer(job)
        self._waiting[tp].add(task)  # until it holds its slots: see hand_back
        try:
            async with self._attempt_slots(job.webhook_id, sub.workspace_id) as answered:
                self._waiting.get(tp, set()).discard(task)
                if limit:
                    # Turns that passed while their jobs waited for slots would start
                    # together: sends are spaced again as they start.
                    await asyncio.sleep(self._rates.space(job.webhook_id, limit, _clock()))
                    while (late := self._rates.begin(job.webhook_id, limit, _clock())) > 0:
                        await asyncio.sleep(late)
                outcome = await attempt(
                    self._client, sub, job, timeout=self.settings.delivery_timeout,
                    allow_insecure=self.settings.allow_insecure_targets, box=self._box,
                )
                log.info("delivery %s to webhook %s attempt %d: %s %s %dms",
                         job.delivery_id, job.webhook_id, outcome.attempt,
                         "success" if outcome.ok else "failed",
                         outcome.response_code or outcome.error, outcome.response_time_ms,
                         extra=_ids(job))
                # The endpoint is done with: its slot goes to the webhook's next job. The
                # worker's slot is held until the outcome is durable: the attempts a kill -9
                # can make a receiver see twice are those holding one, so at most
                # `delivery_concurrency` per worker (README, Delivery guarantees).
                answered()
                self._observe(job, outcome, stage)
                await self.produce_all(
                    after_attempt(job, outcome, self.settings.retry_delays, origin)
                    + self._count(job, sub, outcome, origin.partition))
                self.guard.handled(origin.partition, job)
        except _NoSlot as no_slot:
            return self._defer(job, str(no_slot))
        finally:
            self._waiting.get(tp, set()).discard(task)
        return []

    def hand_back(self, tps: list[TopicPartition]) -> None:
        # Jobs still waiting for a slot are not attempted by a worker giving the partition
        # up (a rebalance, a graceful stop): left uncommitted, the next owner sends them
        # once. Attempts under way finish and their outcomes are logged (Stage._drain), so
        # neither is sent twice.
        for tp in tps:
            for task in self._waiting.pop(tp, set()):
                task.cancel()
        # Their webhooks' failure counts go with them: the next owner starts from 0.
        self.failures.forget(tp.partition for tp in tps)

    def _count(self, job: DeliveryJob, sub: Subscription, outcome: Outcome,
               partition: int) -> list[Produce]:
        """The attempt counted (streams.delivery.failing), and what the count it reached
        makes: a `webhook.failing` event, or the webhook's disable."""
        if outcome.ok:
            self.failures.succeeded(job.webhook_id)
            return []
        if catalog.is_operational(job.event_type):
            return []  # no loops: another webhook's news does not count against this one
        crossing = self.failures.failed(job.webhook_id, sub.updated_at, partition)
        if crossing is None:
            return []
        log.warning("webhook %s: %d consecutive failed attempts (limit %d)%s", sub.id,
                    crossing.failures, self.failures.limit,
                    "; disabling it" if crossing.kind == LIMIT else "", extra=_ids(job))
        return operations.crossed(crossing, sub=sub, job=job, outcome=outcome,
                                  limit=self.failures.limit,
                                  families=self.settings.families, now=now_ms())

    def _defer(self, job: DeliveryJob,
               why: str = "its endpoint is saturated") -> list[Produce]:
        log.info("delivery %s to webhook %s deferred: %s", job.delivery_id, job.webhook_id,
                 why, extra=_ids(job))
        metrics.DEFERRED.inc()
        return deferred(job, self.settings.retry_delays, now_ms())

    def _observe(self, job: DeliveryJob, outcome: Outcome, stage: str) -> None:
        metrics.ATTEMPT.observe(outcome.response_time_ms / 1000)
        status = verdict(job, outcome, self.settings.retry_delays)
        if status == SUCCESS:
            with contextlib.suppress(ValueError):
                happened = parse_iso(job.event_timestamp).timestamp()
                metrics.END_TO_END.observe(max(0.0, time.time() - happened))
        elif status == DEAD:
            metrics.DEAD_LETTERS.labels(reason=dead_reason(outcome)).inc()
        metrics.delivered(status, stage).inc()

    @contextlib.asynccontextmanager
    async def _attempt_slots(self, webhook_id: str,
                             workspace: str) -> AsyncIterator[Callable[[], None]]:
        """One of the webhook's slots, then one of the worker's within its workspace's share;
        what it yields gives the webhook's slot back once its endpoint has answered.

        Always taken in that order, so no two waits form a cycle. A webhook belongs to one
        workspace, so a job holding its webhook's slot while it waits for its workspace's
        turn keeps back only that workspace's jobs; the other way round, it would hold one
        of the worker's shared slots while queued behind a hanging endpoint.
        The webhook's slot bounds the requests its endpoint has to answer at once, so it is
        given back with the answer; the worker's is held to the end of the block (until the
        outcome is durable), and bounds what a crash can send twice.
        A burst can be admitted before its endpoint shows that it hangs, or before its
        workspace reaches its cap, so each wait is bounded too: past `defer_after` the job
        is parked (_NoSlot) if its own webhook lags or its own workspace holds all it may;
        anyone else's keeps waiting (a busy worker, where all wait alike, defers nothing).
        An attempt is timed (`started`) from when it holds both to its answer, so `lagging`
        measures the endpoint, neither the workspace's turn nor the broker.
        """
        slots = self._per_webhook.get(webhook_id)
        if slots is None:
            slots = self._per_webhook[webhook_id] = Slots(
                self.settings.per_webhook_concurrency)
        token: int | None = None
        holds_webhook_slot = False

        def answered() -> None:
            nonlocal holds_webhook_slot
            if holds_webhook_slot:
                holds_webhook_slot = False
                if token is not None:
                    self._load.finished(webhook_id, token, _clock())
                slots.release()

        try:
            while not await slots.acquire(self.settings.defer_after):
                if self._load.lagging(webhook_id, _clock()):
                    raise _NoSlot("its endpoint is saturated")
                if self._slots.capped(workspace):
                    raise _NoSlot("its workspace is at its concurrency limit")
            holds_webhook_slot = True
            while not await self._slots.acquire(workspace, self.settings.defer_after):
                if self._slots.capped(workspace):
                    raise _NoSlot("its workspace is at its concurrency limit")
            try:
                token = self._load.started(webhook_id, _clock())
                yield answered
            finally:
                self._slots.release(workspace)
        finally:
            answered()  # if it ended before its answer
            if token is None:
                self._load.abandoned(webhook_id)
            if webhook_id not in self._load:  # nothing queued or running: forget its slots
                self._per_webhook.pop(webhook_id, None)


def _clock() -> float:
    """The event loop's monotonic clock: the one its timeouts (`defer_after`) run on, so an
    endpoint's pace and the waits for its slots are measured alike (also in a test's
    virtual time)."""
    return asyncio.get_running_loop().time()


class _NoSlot(Exception):
    """No slot within `defer_after` seconds, for a reason of the job's own (the message)."""


def _ids(job: DeliveryJob) -> dict[str, str]:
    """Fields every delivery log line carries, for structured logs."""
    return {"delivery_id": job.delivery_id, "webhook_id": job.webhook_id,
            "event_id": job.event_id}


def hold_until(record: Record, delay_s: float, now: int) -> int:
    """Epoch ms before which a job read from a retry topic whose delay is `delay_s` is not
    attempted.

    Its due time: the `hookstream-due-at` header (the last one, as Kafka's lastHeader), or
    if that is missing or unreadable the job's own due_at, or else now. But never later
    than `delay_s` after the record was appended: retry topics stamp records with the
    broker's clock (LogAppendTime, streams.kafka.topics), which no producer can set, and an
    honest retry is due that long after it was written (routing.after_attempt, deferred),
    or is parked again then if its receiver asked for longer (routing.repark).
    """
    ceiling = int(record.timestamp) + int(delay_s * 1000)
    due = _header_due(record)
    if due is None:
        try:
            due = DeliveryJob.decode(record.value or b"").due_at
        except SchemaError:
            due = None  # handle() quarantines it, at once
    return min(now if due is None else due, ceiling)


def _due(record: Record, job: DeliveryJob) -> int | None:
    """A retry's due time as `hold_until` reads it: its header's, else the job's own."""
    due = _header_due(record)
    return job.due_at if due is None else due


def _header_due(record: Record) -> int | None:
    values = [value for key, value in record.headers or () if key == DUE_AT_HEADER]
    if not values:
        return None
    value = values[-1]
    # Epoch ms are 13 digits; anything longer or other than ASCII digits is unreadable.
    if not isinstance(value, bytes) or not 0 < len(value) <= 20 or not value.isdigit():
        return None
    return int(value)
