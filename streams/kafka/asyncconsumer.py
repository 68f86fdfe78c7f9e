"""The stages' consumer: librdkafka (confluent-kafka) behind streams.pipeline.clients.Consumer;
assigned by hand instead (`assign`), the history feeder's reader (streams.history.feeder).

Why not aiokafka's consumer, which the stages used before: it fetches, decodes record
batches and builds each record's object in Python, on the event loop, which is the worker's
bottleneck (about a tenth of its samples under `make bench` (a)). librdkafka fetches and
decodes in C, in its own threads, and keeps a partition's next records queued ahead.

How it meets the event loop: every call on the librdkafka consumer is made from one
thread of ours, the poller. confluent-kafka lets one call at a time into a client (a
second thread's call sleeps until the first returns), so a `resume` from the loop waited
for the poller's `poll` to time out (85 ms on average under `make bench` (a)) and, against
a poller that polls again at once, for ever.
- `getmany` runs in the poller: `poll` waits for the first record in slices of
  POLL_SLICE_S, and what is queued then comes at once (`consume` without waiting; with a
  timeout it waits for a full batch).
- `pause`, `resume`, `seek` and `commit` are queued and the poller makes them, in order,
  before its next slice, or at once when it is idle.
- A commit's answer takes 8-40 ms (the group coordinator lingers to batch its writes). A
  synchronous commit holds the poller that long, and with it every record librdkafka
  has fetched: made once a second by the stage loop, that was part of (b)'s p95 and p99
  (a record reaching a stage during a commit waited for it, at each of the two stages).
  So the loop's periodic commit is sent in the `background`: librdkafka answers it
  through a later poll (`on_commit`), which the loop, polling on, makes anyway. A
  drain's commit, in a rebalance or at a stop, when no poll may follow, stays
  synchronous.
- Rebalance callbacks run inside `poll`, so in the poller. Each hands the stage's listener
  to the loop and makes what it asks meanwhile (the drain's commit) until it is done:
  librdkafka rejoins the group only after the revoke callback returns, so a revoked
  partition's records in flight finish and are committed while this member still owns
  it, and an assigned partition's first record is read only after the listener has seen
  the assignment (the delivery stage's duplicate guard reads the log first).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Protocol, TypeAlias, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException, Message
from confluent_kafka import TopicPartition as RdPartition

log = logging.getLogger(__name__)

#: The longest the poller waits in librdkafka before it makes what the loop has asked.
POLL_SLICE_S = 0.02
#: The longest librdkafka waits for the broker's answer to a question (it holds the poller).
LOOKUP_TIMEOUT_S = 10.0
#: The longest a background commit waits for its answer (served by a poll) before its
#: caller is told it failed; the next one sends newer offsets anyway.
BACKGROUND_ANSWER_S = 30.0

T = TypeVar("T")


class RebalanceListener(Protocol):
    """Told of a rebalance: `revoked` before the partitions move (the consumer still holds
    them and may commit), `assigned` after, before any of their records is read."""

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None: ...


class CommitFailed(KafkaError):  # type: ignore[misc]
    """An offset commit librdkafka refused (its reason in the message). A KafkaError, as
    aiokafka's consumer raised, so a stage treats it the same way (not fatal)."""


class LookupFailed(KafkaError):  # type: ignore[misc]
    """A question to the broker that librdkafka got no answer to (its reason in the
    message); a KafkaError, so that callers ask again as they did of aiokafka. Each
    partition's question holds the poller up to LOOKUP_TIMEOUT_S: ask only where nothing
    is read meanwhile (the history feeder, while it looks up where to start)."""


class ConsumedRecord:
    """One record as a stage reads it (the fields of aiokafka's ConsumerRecord it uses)."""

    __slots__ = ("headers", "key", "offset", "timestamp", "value")

    def __init__(self, message: Message) -> None:
        self.offset: int = message.offset()  # type: ignore[assignment]
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        self.headers: list[tuple[str, bytes]] | None = message.headers()  # type: ignore[assignment]
        self.timestamp: int = message.timestamp()[1]


class AsyncConsumer:
    """A consumer-group member on a confluent_kafka.Consumer (`config`: librdkafka's)."""

    def __init__(self, config: dict[str, Any], callback_timeout_s: float) -> None:
        self._config = config
        #: The longest a rebalance callback waits for the listener (then it is logged and
        #: librdkafka goes on: the drain has its own, shorter bound).
        self._callback_timeout_s = callback_timeout_s
        self._topics: list[str] = []
        self._listener: RebalanceListener | None = None
        self._consumer: RdConsumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: concurrent.futures.ThreadPoolExecutor | None = None
        #: What the loop asked of the consumer, for the poller to make in order.
        self._asked: collections.deque[Callable[[RdConsumer], None]] = collections.deque()
        #: Set when something is asked, or a listener finished: wakes a callback's wait.
        self._wake = threading.Event()
        self._stopping = False
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._partitions: dict[tuple[str | None, int | None], TopicPartition] = {}
        #: Background commits sent and not yet answered, in the order sent (poller only).
        self._unanswered: collections.deque[tuple[_Offsets, asyncio.Future[None]]] = (
            collections.deque())

    def subscribe(self, topics: list[str], *, listener: RebalanceListener) -> None:
        self._topics, self._listener = list(topics), listener

    async def start(self) -> None:
        """Joins the group if `subscribe` was called; else reads only what `assign` gives."""
        self._loop = asyncio.get_running_loop()
        self._poller = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"poll-{self._config.get('group.id', '')}")
        consumer = RdConsumer({**self._config, "on_commit": self._on_commit},
                              logger=logging.getLogger("hookstream.kafka"))
        if self._topics:
            await self._loop.run_in_executor(self._poller, lambda: consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke))
        self._consumer = consumer

    async def stop(self) -> None:
        consumer = self._consumer
        if consumer is None or self._poller is None or self._loop is None or self._stopping:
            return
        self._stopping = True  # a poll under way returns at its next slice
        try:
            # Leaving the group runs the revoke callback, which hands its listener to this
            # loop (a drain may still commit): the loop must be free meanwhile.
            await self._loop.run_in_executor(self._poller, self._close, consumer)
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)
        finally:
            self._consumer = None
            self._poller.shutdown(wait=False)
            self._assigned = frozenset()

    def _close(self, consumer: RdConsumer) -> None:
        self._make_asked(consumer)
        try:
            consumer.close()
        finally:
            while self._unanswered:
                self._answer(self._unanswered.popleft()[1], None,
                             CommitFailed("the consumer closed before its answer came"))

    # -- reading ---------------------------------------------------------------------
    async def getmany(self, *, timeout_ms: int,
                      max_records: int) -> Mapping[TopicPartition, list[ConsumedRecord]]:
        """Records of assigned, unpaused partitions, up to `max_records`, waiting up to
        `timeout_ms` for the first. Cancelled while its poll runs, it drops what that poll
        returns, though librdkafka's position has moved past it: cancel only to stop
        (Stage.stop), never to go on reading."""
        assert self._loop is not None and self._poller is not None
        consumer = self._consumer
        if consumer is None or self._stopping:
            await asyncio.sleep(timeout_ms / 1000)  # as a poll that found nothing
            return {}
        messages = await self._loop.run_in_executor(
            self._poller, self._poll, consumer, max_records, timeout_ms / 1000)
        batches: dict[TopicPartition, list[ConsumedRecord]] = {}
        last: tuple[str | None, int | None] = ("", -1)
        bucket: list[ConsumedRecord] | None = None
        for message in messages:
            error = message.error()
            if error is not None:
                # Not a record: the broker away, a topic not there yet. librdkafka retries
                # on its own; the stage polls on.
                log.warning("consumer: %s", error)
                continue
            where = (message.topic(), message.partition())
            if where != last:  # a partition's records come together: one lookup a run
                last = where
                tp = self._partition(where)
                # A record polled just before its partition was revoked (in the same
                # call): drained already, and read again by its next owner.
                bucket = (batches.setdefault(tp, []) if tp in self._assigned else None)
            if bucket is not None:
                bucket.append(ConsumedRecord(message))
        return batches

    def _poll(self, consumer: RdConsumer, max_records: int, timeout_s: float) -> list[Message]:
        """In the poller: the first record within `timeout_s`, with what is queued then;
        between slices, what the loop asked."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._make_asked(consumer)
            first = consumer.poll(min(POLL_SLICE_S, max(0.0, deadline - time.monotonic())))
            if first is not None:
                break
            if time.monotonic() >= deadline or self._stopping:
                return []
        return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    def _partition(self, where: tuple[str | None, int | None]) -> TopicPartition:
        tp = self._partitions.get(where)
        if tp is None:
            tp = self._partitions[where] = TopicPartition(*where)
        return tp

    # -- asked of the consumer, made by the poller --------------------------------------
    def pause(self, *partitions: TopicPartition) -> None:
        parts = [RdPartition(tp.topic, tp.partition) for tp in partitions]
        self._ask(lambda consumer: consumer.pause(parts))

    def resume(self, *partitions: TopicPartition) -> None:
        parts = [RdPartition(tp.topic, tp.partition) for tp in partitions]
        self._ask(lambda consumer: consumer.resume(parts))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        where = RdPartition(partition.topic, partition.partition, offset)
        self._ask(lambda consumer: consumer.seek(where))

    def assignment(self) -> AbstractSet[TopicPartition]:
        return self._assigned

    # -- assigned by hand (never subscribed): no group membership, commits still stored --
    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read exactly these partitions, each from its offset, in place of any before.
        Records of partitions no longer assigned are not returned from now on, even by a
        poll under way."""
        self._assigned = frozenset(positions)
        parts = [RdPartition(tp.topic, tp.partition, offset) for tp, offset in positions.items()]
        self._ask(lambda consumer: consumer.assign(parts))

    def unassign(self) -> None:
        self.assign({})

    async def beginning_offsets(
            self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's first offset still in the log."""
        assert self._loop is not None

        def ask(consumer: RdConsumer) -> dict[TopicPartition, int]:
            return {tp: consumer.get_watermark_offsets(
                RdPartition(tp.topic, tp.partition), timeout=LOOKUP_TIMEOUT_S)[0]
                for tp in partitions}

        answer: asyncio.Future[dict[TopicPartition, int]] = self._loop.create_future()
        self._ask(ask, answer)
        try:
            return await answer
        except (KafkaException, RuntimeError) as exc:
            raise LookupFailed(str(exc)) from exc

    async def commit(self, offsets: Mapping[TopicPartition, int], *,
                     background: bool = False) -> None:
        """Store `offsets`. `background`: sent without holding the poller, answered by a
        later poll, so only for a caller that goes on polling (else cancel the wait)."""
        assert self._loop is not None
        if self._consumer is None:
            raise CommitFailed("the consumer is closed")
        wanted = [RdPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        if background:
            answered: asyncio.Future[None] = self._loop.create_future()
            self._ask(lambda consumer: self._send(consumer, wanted, answered))
            try:
                await asyncio.wait_for(answered, BACKGROUND_ANSWER_S)
            except TimeoutError:
                raise CommitFailed(f"no answer in {BACKGROUND_ANSWER_S:g} s") from None
            return
        answer: asyncio.Future[list[RdPartition] | None] = self._loop.create_future()
        self._ask(lambda consumer: consumer.commit(offsets=wanted, asynchronous=False),
                  answer)
        try:
            stored = await answer
        except (KafkaException, RuntimeError) as exc:
            raise CommitFailed(str(exc)) from exc
        refused = _refusal(stored)
        if refused is not None:
            raise refused

    def _send(self, consumer: RdConsumer, wanted: list[RdPartition],
              answered: asyncio.Future[None]) -> None:
        """In the poller: a background commit sent; `_on_commit` answers it."""
        try:
            consumer.commit(offsets=wanted, asynchronous=True)
        except (KafkaException, RuntimeError) as exc:
            self._answer(answered, None, CommitFailed(str(exc)))
            return
        self._unanswered.append((_offsets(wanted), answered))

    def _on_commit(self, error: RdError | None, stored: list[RdPartition]) -> None:
        """librdkafka's answer to a background commit, served by a poll (in the poller).
        Answers come in the order sent; one is matched by its offsets all the same."""
        if not self._unanswered:
            return
        key = _offsets(stored)
        match = next((entry for entry in self._unanswered if entry[0] == key),
                     self._unanswered[0])
        self._unanswered.remove(match)
        # Each partition refused named, when librdkafka says which; else its error.
        refused = _refusal(stored) or (CommitFailed(str(error)) if error is not None else None)
        self._answer(match[1], None, refused)

    def _answer(self, answer: asyncio.Future[T], result: T | None,
                error: Exception | None) -> None:
        """From the poller: `answer` settled on the loop."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            self._loop.call_soon_threadsafe(_settle, answer, result, error)

    def _ask(self, call: Callable[[RdConsumer], T],
             answer: asyncio.Future[T] | None = None) -> None:
        """Queue `call` for the poller; its result or error goes to `answer`, if any
        (else an error is logged: a pause, resume or seek of a partition no longer
        assigned, whose next owner reads from the committed offset)."""
        assert self._loop is not None and self._poller is not None

        def make(consumer: RdConsumer) -> None:
            result: T | None = None
            error: Exception | None = None
            try:
                result = call(consumer)
            except Exception as exc:
                error = exc
                if answer is None:
                    log.warning("consumer: %s", exc)
            if answer is not None:
                self._answer(answer, result, error)

        self._asked.append(make)
        self._wake.set()
        consumer = self._consumer
        if consumer is not None:
            # Made at once if the poller is idle; after the running poll's slice if not.
            self._poller.submit(self._make_asked, consumer)

    def _make_asked(self, consumer: RdConsumer) -> None:
        while self._asked:
            self._asked.popleft()(consumer)

    # -- rebalance callbacks, in the poller -------------------------------------------
    def _on_assign(self, consumer: RdConsumer, partitions: list[RdPartition]) -> None:
        assigned = [self._partition((p.topic, p.partition)) for p in partitions]
        self._assigned = frozenset(assigned)  # eager rebalancing: the whole assignment
        # A partition comes unpaused, as the stage expects (it forgot its pauses in the
        # drain): librdkafka keeps an application's pause through a revoke and a
        # reassignment (librdkafka#1849), so a partition paused then would never flow.
        try:
            consumer.resume(partitions)
        except KafkaException as exc:
            log.warning("consumer: resuming the partitions assigned: %s", exc)
        if self._listener is not None:
            self._on_loop(consumer, self._listener.on_partitions_assigned(assigned), "assigned")

    def _on_revoke(self, consumer: RdConsumer, partitions: list[RdPartition]) -> None:
        revoked = [self._partition((p.topic, p.partition)) for p in partitions]
        try:
            if self._listener is not None:
                self._on_loop(consumer, self._listener.on_partitions_revoked(revoked),
                              "revoked")
        finally:
            self._assigned = self._assigned - set(revoked)

    def _on_loop(self, consumer: RdConsumer, step: Coroutine[Any, Any, None],
                 what: str) -> None:
        """Run `step` on the loop; meanwhile make what it asks of the consumer."""
        assert self._loop is not None
        done = asyncio.run_coroutine_threadsafe(step, self._loop)
        done.add_done_callback(lambda _: self._wake.set())
        deadline = time.monotonic() + self._callback_timeout_s
        while not done.done() and time.monotonic() < deadline:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            self._make_asked(consumer)
        try:
            done.result(0)
        except concurrent.futures.TimeoutError:
            # librdkafka must go on with the rebalance either way; what the listener did
            # not finish is repeated by the partitions' next owner (uncommitted).
            done.cancel()
            log.error("consumer: the listener for partitions %s did not finish in %.0fs",
                      what, self._callback_timeout_s)
        except Exception:
            log.exception("consumer: the listener for partitions %s failed", what)


_Offsets: TypeAlias = frozenset[tuple[str, int, int]]


def _offsets(partitions: list[RdPartition]) -> _Offsets:
    return frozenset((p.topic, p.partition, p.offset) for p in partitions)


def _refusal(stored: list[RdPartition] | None) -> CommitFailed | None:
    """The partitions a commit's answer says were not stored, each with its reason."""
    refused = [f"{p.topic}[{p.partition}]: {p.error}" for p in stored or () if p.error]
    return CommitFailed("; ".join(refused)) if refused else None


def _settle(answer: asyncio.Future[T], result: T | None,
            error: BaseException | None) -> None:
    if answer.done():
        return  # its waiter was cancelled
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)  # type: ignore[arg-type]
