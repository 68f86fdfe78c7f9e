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
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple, Protocol

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


class _Call(NamedTuple):
    run: Callable[[], None]
    #: May it run inside a rebalance callback (the listener's commit; a pause, a seek)?
    #: Closing the consumer may not: it waits for the callback to end.
    in_rebalance: bool


class _Owner:
    """The thread that makes every call on the consumer, one at a time, in order."""

    def __init__(self) -> None:
        self._calls: deque[_Call] = deque()
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="hookstream-consumer",
                                        daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any], *,
             in_rebalance: bool = True) -> concurrent.futures.Future[Any]:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return  # its caller gave up waiting (a stage stopping): not made at all
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to whoever awaits the call
                done.set_exception(exc)
        with self._changed:
            self._calls.append(_Call(run, in_rebalance))
            self._changed.notify()
        return done

    def waiting(self) -> bool:
        """Are calls queued (asked in the owner thread, by a fetch)?"""
        return bool(self._calls)

    def serve_until(self, done: concurrent.futures.Future[Any]) -> None:
        """In the owner thread, inside a rebalance callback: run the calls that may run
        there until `done`; the others wait for the callback to end."""
        done.add_done_callback(lambda _: self._wake())
        while True:
            with self._changed:
                call = self._next(in_rebalance=True)
                while call is None and not done.done():
                    self._changed.wait()
                    call = self._next(in_rebalance=True)
            if call is None:
                return
            call.run()

    def close(self) -> None:
        """Ends the thread once every call queued is made."""
        self._wake(closing=True)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._changed:
                call = self._next(in_rebalance=False)
                while call is None and not self._closing:
                    self._changed.wait()
                    call = self._next(in_rebalance=False)
            if call is None:
                return
            call.run()

    def _next(self, *, in_rebalance: bool) -> _Call | None:
        """The first queued call (that may run in a rebalance callback, if asked), taken."""
        for call in self._calls:
            if call.in_rebalance or not in_rebalance:
                self._calls.remove(call)
                return call
        return None

    def _wake(self, *, closing: bool = False) -> None:
        with self._changed:
            self._closing = self._closing or closing
            self._changed.notify_all()


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
            # A last revoke: the listener commits. Not inside a callback under way (an
            # assignment's listener, say): it waits for that to end.
            await self._call(lambda c: c.close(), in_rebalance=False)
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
    async def _call(self, fn: Callable[[RdConsumer], Any], *,
                    in_rebalance: bool = True) -> Any:
        consumer, owner = self._consumer, self._owner
        if consumer is None or owner is None:
            raise ConsumerFailed("the consumer is not started")
        try:
            return await asyncio.wrap_future(owner.call(lambda: fn(consumer),
                                                        in_rebalance=in_rebalance))
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
