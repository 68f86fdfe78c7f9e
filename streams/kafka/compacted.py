"""A local, always-current copy of a compacted topic, on every worker.

Reads every partition from the beginning with a plain consumer (no group), then tails it,
handing each record to `apply`. `ready` is set once the copy has caught up with the end
offsets seen at start; `sync()` waits until it has caught up with the end offsets of now,
which makes a read after a write on another worker see that write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from .admin import partitions_of

log = logging.getLogger(__name__)

#: How long the broker holds a tailing fetch that finds nothing. A record written meanwhile
#: ends the wait at once, so this bounds only an idle copy's requests: at 100 ms, the five
#: copies every worker keeps (API keys, idempotency, logouts, dead letters, replays) made
#: 50 fetches a second between them, each parsed in Python on the worker's loop.
TAIL_FETCH_WAIT_MS = 500

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
#: Applies one record to the local copy.
Apply = Callable[[Record], None]
T = TypeVar("T")


class CompactedView:
    def __init__(self, bootstrap_servers: str, topic: str, apply: Apply) -> None:
        self.ready = asyncio.Event()
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._apply = apply
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._tps: list[TopicPartition] = []
        #: Next offset to read per partition.
        self.positions: dict[int, int] = {}
        self._advanced = asyncio.Condition()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=TAIL_FETCH_WAIT_MS,
        )
        await consumer.start()
        # End offsets for sync() come from a client of their own: asked on the tailing
        # consumer's connection, the request waits behind its long-poll fetch (at 100 ms,
        # sync's p50 was 101 ms there, 0.4 ms on its own client).
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                         enable_auto_commit=False)
        await self._offsets.start()
        partitions = await _partitions_of(self._bootstrap, self._topic)
        self._tps = [TopicPartition(self._topic, p) for p in partitions]
        consumer.assign(self._tps)
        await consumer.seek_to_beginning(*self._tps)
        self._consumer = consumer
        # A partition whose records were all deleted (retention on a compact,delete topic)
        # starts past offset 0: count it as read up to its log start, or the copy never
        # reaches the end offset it waits for (never ready, every sync() times out).
        starts = await consumer.beginning_offsets(self._tps)
        self.positions = {tp.partition: offset for tp, offset in starts.items()}
        ends = await consumer.end_offsets(self._tps)
        self._task = asyncio.create_task(self._run({tp.partition: o for tp, o in ends.items()}))
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # The copy would silently go stale: make it loud.
            log.critical("%s: local copy stopped", self._topic, exc_info=task.exception())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._offsets is not None:
            await self._offsets.stop()

    def _caught_up(self, ends: dict[int, int]) -> bool:
        return all(self.positions.get(p, 0) >= end for p, end in ends.items())

    async def sync(self, timeout: float = 5.0) -> bool:
        """Wait until everything written to the topic before this call is applied."""
        assert self._offsets is not None
        ends = {tp.partition: o for tp, o in (await self._offsets.end_offsets(self._tps)).items()}
        try:
            async with asyncio.timeout(timeout), self._advanced:
                await self._advanced.wait_for(lambda: self._caught_up(ends))
        except TimeoutError:
            return False
        return True

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until `predicate` holds after some record is applied (bounded)."""
        try:
            async with asyncio.timeout(timeout), self._advanced:
                await self._advanced.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def _run(self, ends_at_start: dict[int, int]) -> None:
        assert self._consumer is not None
        if self._caught_up(ends_at_start):
            self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        self._apply(message)
                    except Exception:
                        # Only our own code writes these topics; a bad record is a bug.
                        log.exception("%s: skipping record at %d:%d", self._topic,
                                      tp.partition, message.offset)
                    self.positions[tp.partition] = message.offset + 1
            if not self.ready.is_set() and self._caught_up(ends_at_start):
                log.info("%s: local copy ready", self._topic)
                self.ready.set()
            async with self._advanced:
                self._advanced.notify_all()


async def _partitions_of(bootstrap: str, topic: str) -> list[int]:
    return await asyncio.to_thread(partitions_of, bootstrap, topic)


class KeyedView(CompactedView, Generic[T]):
    """A compacted topic as a dict: message key -> decoded value; a tombstone deletes."""

    def __init__(self, bootstrap_servers: str, topic: str, decode: Callable[[bytes], T]) -> None:
        self.current: dict[str, T] = {}
        self._decode = decode
        super().__init__(bootstrap_servers, topic, self._put)

    def _put(self, record: Record) -> None:
        if record.key is None:
            return
        if record.value is None:
            self.current.pop(record.key.decode(), None)
        else:
            self.current[record.key.decode()] = self._decode(record.value)


class ExpiringView(KeyedView[T]):
    """A KeyedView whose entries leave memory once `expires_at(value)` (ms) has passed, not
    only when the topic's retention deletes them: memory holds what is live, not all.

    Records arrive in about the order they were written, so the oldest sit at the front of
    `current` (kept in arrival order) and eviction only ever looks there.
    """

    def __init__(self, bootstrap_servers: str, topic: str, decode: Callable[[bytes], T],
                 expires_at: Callable[[T], int], now: Callable[[], int]) -> None:
        super().__init__(bootstrap_servers, topic, decode)
        self.current: OrderedDict[str, T] = OrderedDict()
        self._expires_at = expires_at
        self._now = now

    def _put(self, record: Record) -> None:
        super()._put(record)
        if record.key is not None and record.value is not None:
            self.current.move_to_end(record.key.decode())
        self.evict(self._now())

    def evict(self, now: int) -> None:
        while self.current:
            oldest_key, oldest = next(iter(self.current.items()))
            if self._expires_at(oldest) > now:
                return
            del self.current[oldest_key]

    def get(self, key: str) -> T | None:
        """The live entry for `key`, or None."""
        now = self._now()
        self.evict(now)
        found = self.current.get(key)
        return None if found is None or self._expires_at(found) <= now else found
