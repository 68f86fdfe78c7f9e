"""The delivery stage's duplicate guard at work: what this worker knows of each of its
partitions' outcomes, loaded when a partition is assigned, and the jobs in flight.

streams.delivery.guard says what a duplicate is. Here: when the stage is assigned
partition p of any of its topics, the newest `duplicate_guard_size` records of
hookstream.delivery-log partition p are read (their headers only) before any job of p is;
every outcome the stage produces is added as it is known; and a second copy of a job
that is in flight right now waits for the first and is then skipped, rather than racing
it to the receiver. A partition whose outcomes cannot be read in DUPLICATE_GUARD_LOAD_S
starts with what is known (an empty guard: at-least-once, as before), with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import TopicPartition

from ..kafka.topics import DELIVERY_LOG
from ..pipeline.clients import PartitionTail, TailFactory
from ..settings import Settings
from .guard import SeenOutcomes, instance_key, outcome_of
from .models import DeliveryJob

log = logging.getLogger(__name__)

#: Seconds a partition's outcomes may take to read before it starts without them.
DUPLICATE_GUARD_LOAD_S = 60.0


class DuplicateGuard:
    def __init__(self, settings: Settings, tail_factory: TailFactory) -> None:
        self.capacity = settings.duplicate_guard_size
        self._log_topic = settings.topic(DELIVERY_LOG)
        self._tail: PartitionTail | None = tail_factory(settings) if self.capacity else None
        self._seen: dict[int, SeenOutcomes] = {}
        #: Per partition, set once its outcomes are read: no job of it is judged before.
        self._loaded: dict[int, asyncio.Event] = {}
        #: Per partition number, the topics of it this worker holds.
        self._held: dict[int, frozenset[str]] = {}
        #: (instance key, attempt) of the jobs being handled -> resolved when handled.
        self._running: dict[tuple[int, int], asyncio.Future[None]] = {}

    async def start(self) -> None:
        if self._tail is not None:
            await self._tail.start()

    async def stop(self) -> None:
        if self._tail is not None:
            await self._tail.stop()

    def remembered(self) -> int:
        """Outcomes held, over every partition (the gauge of its memory)."""
        return sum(len(seen) for seen in self._seen.values())

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """The stage now holds these partitions (its whole assignment).

        A partition number's outcomes are read again whenever the set of this worker's
        topics with that number changes: while another worker held deliveries p, it
        wrote outcomes to log p that this one, holding only retry p, never saw.
        """
        held: dict[int, frozenset[str]] = {}
        for tp in assigned:
            held[tp.partition] = held.get(tp.partition, frozenset()) | {tp.topic}
        for gone in set(self._loaded) - set(held):
            self._seen.pop(gone, None)
            self._loaded.pop(gone).set()  # whoever waits judges without it
        changed = sorted(p for p, topics in held.items() if self._held.get(p) != topics)
        self._held = held
        # Marked first: a client may hand the stage records of a partition while its
        # rebalance callback (this) still runs; `claim` waits for the partition's load.
        for partition in changed:
            self._seen.pop(partition, None)
            self._loaded[partition] = asyncio.Event()
        for partition in changed:
            seen = await self._load(partition)
            if self._held.get(partition) == held.get(partition):  # not moved meanwhile
                self._seen[partition] = seen
            self._loaded[partition].set()

    async def _load(self, partition: int) -> SeenOutcomes:
        seen = SeenOutcomes(self.capacity)
        if self._tail is None:
            return seen
        try:
            records = await asyncio.wait_for(
                self._tail.newest(self._log_topic, partition, self.capacity),
                DUPLICATE_GUARD_LOAD_S)
        except Exception as exc:  # the broker's errors, or the deadline
            log.warning("duplicate guard: outcomes of %s[%d] not read (%s: %s); its jobs "
                        "are delivered at least once until it knows them", self._log_topic,
                        partition, type(exc).__name__, exc)
            return seen
        for record in records:
            known = outcome_of(record.headers)
            if known is not None:
                seen.add(*known)
        log.info("duplicate guard: %d outcomes of %s[%d] known", len(seen), self._log_topic,
                 partition)
        return seen

    @contextlib.asynccontextmanager
    async def claim(self, partition: int, job: DeliveryJob) -> AsyncIterator[bool]:
        """True: handle the job (and call `handled` once its outcome is known). False: a
        copy of it already has an outcome; skip it."""
        loaded = self._loaded.get(partition)
        if loaded is not None:
            await loaded.wait()
        key = instance_key(job.delivery_id, job.created_at)
        ident = (key, job.attempt)
        while (running := self._running.get(ident)) is not None:
            await asyncio.shield(running)
        seen = self._seen.get(partition)
        if seen is not None and seen.done(key, job.attempt):
            yield False
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[ident] = done
        try:
            yield True
        finally:
            del self._running[ident]
            done.set_result(None)

    def handled(self, partition: int, job: DeliveryJob) -> None:
        """The job's outcome is known (and on its way to the log)."""
        seen = self._seen.get(partition)
        if seen is not None:
            seen.add(instance_key(job.delivery_id, job.created_at), job.attempt)
