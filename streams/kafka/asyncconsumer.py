"""The stages' consumer: librdkafka (confluent-kafka) behind streams.pipeline.clients.Consumer.

Why not aiokafka's consumer, which the stages used before: it parses every fetch response
in Python, about a tenth of a loaded worker's CPU (py-spy during `make bench` (a)).
librdkafka fetches and parses in C, in its own threads.

How it meets the event loop. confluent-kafka's Consumer admits one caller at a time: a
`pause()` made while another thread waits in `poll()` waits for that poll to return. So one
thread of ours owns the consumer and runs every call on it, in the order they were made
(`_Owner`): the loop's `getmany` and `commit` await their call's outcome; `pause`,
`resume` and `seek` are queued and return at once. A fetch gives up its wait as soon as a
call is queued behind it, so a queued call waits a few milliseconds, not a poll's timeout.
Calls made on one partition keep Kafka's rules for the stage: librdkafka drops records
fetched before a seek or a pause, so the next batch starts where the stage sought.

Rebalances: librdkafka tells of them from inside `poll()`, in the owner thread. A new
assignment starts unpaused, as with Kafka's Java consumer (librdkafka would keep a pause). The
listener runs on the loop (it drains in-flight records and commits them) while the owner
thread waits for it and meanwhile runs the calls the listener makes, the commit included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import KafkaException, Message
from confluent_kafka import TopicPartition as RdTopicPartition

log = logging.getLogger(__name__)

#: How long a fetch waits in C at a time before it looks for calls queued behind it.
_WAIT_SLICE_S = 0.02


class ConsumerFailed(KafkaError):  # type: ignore[misc]
    """librdkafka refused a call (its reason in the message); a KafkaError, as aiokafka's
    consumer raised, so a stage treats a failed commit the same way."""


class Listener(Protocol):
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None: ...


class _Owner:
    """The thread that makes every call on the consumer, one at a time, in order."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="hookstream-consumer",
                                        daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return  # its caller gave up waiting (a stage stopping): not made at all
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to whoever awaits the call
                done.set_exception(exc)
        self._inbox.put(run)
        return done

    def waiting(self) -> bool:
        """Are calls queued (asked in the owner thread, by a fetch)?"""
        return not self._inbox.empty()

    def serve_until(self, done: concurrent.futures.Future[Any]) -> None:
        """In the owner thread, inside a rebalance callback: run queued calls until `done`."""
        done.add_done_callback(lambda _: self._inbox.put(_nothing))
        while not done.done():
            run = self._inbox.get()
            if run is not None:
                run()

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (run := self._inbox.get()) is not None:
            run()


def _nothing() -> None:
    """Wakes the owner thread."""


class AsyncConsumer:
    """A streams.pipeline.clients.Consumer on a confluent_kafka.Consumer."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._topics: list[str] = []
        self._listener: Listener | None = None
        self._consumer: RdConsumer | None = None
        self._owner: _Owner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._partitions: dict[tuple[str, int], TopicPartition] = {}

    def subscribe(self, topics: list[str], *, listener: Listener) -> None:
        self._topics, self._listener = list(topics), listener

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._owner = _Owner()
        self._consumer = RdConsumer(self._config, logger=logging.getLogger("hookstream.kafka"))
        await self._call(lambda c: c.subscribe(self._topics, on_assign=self._on_assign,
                                               on_revoke=self._on_revoke,
                                               on_lost=self._on_revoke))

    async def stop(self) -> None:
        if self._owner is None:
            return
        try:
            await self._call(lambda c: c.close())  # a last revoke: the listener commits
        finally:
            owner, self._owner = self._owner, None
            await asyncio.to_thread(owner.close)

    # -- records -----------------------------------------------------------------------
    async def getmany(self, *, timeout_ms: int,
                      max_records: int) -> Mapping[TopicPartition, list[ConsumerRecord]]:
        messages: list[Message] = await self._call(
            lambda c: self._fetch(c, timeout_ms / 1000, max_records))
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                # Not raised: the batch's records are taken from librdkafka already, and a
                # record the stage never sees would be skipped until the next rebalance.
                log.log(logging.ERROR if error.fatal() else logging.WARNING, "consuming: %s",
                        error.str())
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue  # only an error lacks them
            tp = self._partition(topic, partition)
            records = batches.get(tp)
            if records is None:
                records = batches[tp] = []
            timestamp_type, timestamp = message.timestamp()
            value, key = message.value(), message.key()
            records.append(ConsumerRecord(
                topic, partition, offset, timestamp, timestamp_type, key,
                value, None, -1 if key is None else len(key),
                -1 if value is None else len(value), message.headers() or ()))
        return batches

    def _fetch(self, consumer: RdConsumer, timeout_s: float,
               max_records: int) -> list[Message]:
        """In the owner thread: what is there, or what comes within `timeout_s`; less
        if a call is queued meanwhile (it runs as soon as this returns)."""
        assert self._owner is not None
        deadline = time.monotonic() + timeout_s
        while True:
            first = consumer.poll(min(_WAIT_SLICE_S, max(0.0, deadline - time.monotonic())))
            if first is not None:
                # consume() waits for max_records or its timeout: with 0, only takes.
                return [first, *consumer.consume(max_records - 1, 0)]
            if self._owner.waiting() or time.monotonic() >= deadline:
                return []

    def pause(self, *partitions: TopicPartition) -> None:
        self._queue(lambda c: c.pause(_rd(partitions)))

    def resume(self, *partitions: TopicPartition) -> None:
        self._queue(lambda c: c.resume(_rd(partitions)))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._queue(lambda c: c.seek(RdTopicPartition(partition.topic, partition.partition,
                                                      offset)))

    def assignment(self) -> AbstractSet[TopicPartition]:
        return self._assigned

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        wanted = [RdTopicPartition(tp.topic, tp.partition, offset)
                  for tp, offset in offsets.items()]
        committed = await self._call(lambda c: c.commit(offsets=wanted, asynchronous=False))
        refused = [f"{p.topic}[{p.partition}]: {p.error}" for p in committed or ()
                   if p.error is not None]
        if refused:
            raise ConsumerFailed("commit refused: " + ", ".join(refused))

    # -- rebalances (in the owner thread, from poll) -------------------------------------
    def _on_assign(self, consumer: RdConsumer, partitions: list[RdTopicPartition]) -> None:
        assert self._listener is not None
        # librdkafka keeps a partition paused across rebalances (a stage forgets its
        # pauses when the partition is revoked, as Kafka's Java and aiokafka consumers do),
        # so a partition paused when a broker restart took it away would come back paused
        # for ever: a new assignment starts unpaused.
        consumer.assign(partitions)
        consumer.resume(partitions)
        assigned = [self._partition(p.topic, p.partition) for p in partitions]
        self._assigned = frozenset(assigned)
        self._on_loop(self._listener.on_partitions_assigned(assigned))

    def _on_revoke(self, _consumer: RdConsumer, partitions: list[RdTopicPartition]) -> None:
        assert self._listener is not None
        revoked = [self._partition(p.topic, p.partition) for p in partitions]
        # Still assigned while the listener drains: what is done is committed.
        self._on_loop(self._listener.on_partitions_revoked(revoked))
        self._assigned = self._assigned.difference(revoked)

    def _on_loop(self, listening: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None and self._owner is not None
        done = asyncio.run_coroutine_threadsafe(listening, self._loop)
        self._owner.serve_until(done)
        try:
            done.result()
        except Exception:
            log.exception("a rebalance listener failed")

    # -- the way to the owner thread ----------------------------------------------------
    async def _call(self, fn: Callable[[RdConsumer], Any]) -> Any:
        consumer, owner = self._consumer, self._owner
        if consumer is None or owner is None:
            raise ConsumerFailed("the consumer is not started")
        try:
            return await asyncio.wrap_future(owner.call(lambda: fn(consumer)))
        except KafkaException as exc:
            raise ConsumerFailed(exc.args[0].str()) from exc

    def _queue(self, fn: Callable[[RdConsumer], Any]) -> None:
        consumer, owner = self._consumer, self._owner
        if consumer is None or owner is None:
            return
        owner.call(lambda: fn(consumer)).add_done_callback(_log_failure)

    def _partition(self, topic: str, partition: int) -> TopicPartition:
        tp = self._partitions.get((topic, partition))
        if tp is None:
            tp = self._partitions[(topic, partition)] = TopicPartition(topic, partition)
        return tp


def _rd(partitions: tuple[TopicPartition, ...]) -> list[RdTopicPartition]:
    return [RdTopicPartition(tp.topic, tp.partition) for tp in partitions]


def _log_failure(done: concurrent.futures.Future[Any]) -> None:
    exc = done.exception()
    if exc is not None:
        log.warning("a consumer call failed: %s", exc)
