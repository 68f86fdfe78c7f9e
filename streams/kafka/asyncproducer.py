"""The stages' producer: librdkafka (confluent-kafka) behind awaitable sends.

Why not aiokafka's producer, which the stages used before: it builds batches, frames
requests and tracks acknowledgements in Python, about a tenth of a loaded worker's CPU
(py-spy during `make bench` (a)). librdkafka does all of that in C, in its own threads; what
is left in Python is one `produce()` call and one future per record.

How acknowledgements reach the event loop: librdkafka reports each one from `poll()`, which
the loop itself calls, without blocking (`poll(0)`), every millisecond while records are in
flight and every tenth of a second otherwise (librdkafka's logs and errors come the same
way). Each report is handed to its future right after, on the loop. Until a pump of the
loop's own, a thread blocked in `poll()`: but confluent-kafka takes the GIL back for each
report's callback, so that thread and the loop handed the GIL to each other thousands of
times a second under load, and `call_soon_threadsafe` woke the loop through its self-pipe.
With the pump, `make bench` (a) spent 0.36 and 0.40 CPU-s per 1,000 deliveries against
0.44 and 0.45, and delivered 2,415 and 2,245/s against 2,160 and 2,094 (runs alternated);
(b)'s median grew by about a millisecond, its p99 moved within its spread.
(Only `stop()` still serves reports from another thread: `flush()`'s.)

Records land where the Java client would put them (`murmur2_random`), as aiokafka's default
partitioner did, so webhook-keyed records keep their partition across the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple

from aiokafka.errors import KafkaError
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

log = logging.getLogger(__name__)

#: While records are in flight, the pause between the loop's polls: how long a report may
#: wait for one on a loop that is free.
_PUMP_S = 0.001
#: ... and when none are (logs and errors).
_IDLE_POLL_S = 0.1
#: While librdkafka's local queue is full, the pause before a record is offered again.
_QUEUE_FULL_PAUSE_S = 0.005
#: How long stop() waits for what was sent to be acknowledged.
_STOP_FLUSH_S = 10.0
#: librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses.
_UNASSIGNED = -1


class ProduceFailed(KafkaError):  # type: ignore[misc]
    """The broker did not acknowledge a record (librdkafka's reason in the message).

    A KafkaError, as aiokafka's producer raised, so a stage retries it the same way."""


class _Outgoing(NamedTuple):
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None
    partition: int


class AsyncProducer:
    """A streams.pipeline.clients.Producer on a confluent_kafka.Producer."""

    def __init__(self, config: dict[str, Any], stop_flush_s: float = _STOP_FLUSH_S) -> None:
        self._config = config
        self._stop_flush_s = stop_flush_s
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pump_task: asyncio.Task[None] | None = None
        #: Set by a send, so an idle pump goes back to polling every millisecond at once.
        self._sent: asyncio.Event | None = None
        self._lock = threading.Lock()
        #: Reports not yet handed to their futures.
        self._reports: list[tuple[asyncio.Future[None], RdKafkaError | None, Producer]] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._producer = Producer(self._config, logger=logging.getLogger("hookstream.kafka"))
        self._sent = asyncio.Event()
        self._pump_task = asyncio.create_task(self._pump(), name="hookstream-producer")

    async def stop(self) -> None:
        producer, pump = self._producer, self._pump_task
        if producer is None or pump is None:
            return
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        # What was sent is acknowledged (or fails) before the producer goes; what is still
        # not after the flush's bound fails now, so that no sender waits for ever.
        if await asyncio.to_thread(producer.flush, self._stop_flush_s):
            producer.purge()
            producer.poll(0)
        self._settle()
        self._producer = self._pump_task = None

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None,
                            headers: Sequence[tuple[str, str | bytes | None]] | None = None,
                            partition: int | None = None) -> None:
        """Returns once all in-sync replicas have the record; raises ProduceFailed if the
        broker refused it or librdkafka gave up (after its own retries)."""
        await self.send(topic, value=value, key=key, headers=headers, partition=partition)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Sequence[tuple[str, str | bytes | None]] | None = None,
             partition: int | None = None) -> Awaitable[None]:
        """Hands the record to librdkafka now (records sent one after another keep their
        order); what it returns is done once all in-sync replicas have it, and raises
        ProduceFailed when they will not. For many records at once without a task each."""
        record = _Outgoing(topic, value, key, list(headers) if headers else None,
                           _UNASSIGNED if partition is None else partition)
        sending = self._start(record)
        return self._send_when_room(record) if sending is None else sending

    async def _send_when_room(self, record: _Outgoing) -> None:
        """While librdkafka's local queue is full: acknowledgements will free it."""
        while (sending := self._start(record)) is None:
            await asyncio.sleep(_QUEUE_FULL_PAUSE_S)
        await sending

    def _start(self, record: _Outgoing) -> asyncio.Future[None] | None:
        """The record's acknowledgement to come (failed already if it cannot be sent), or
        None while the local queue is full."""
        loop = self._loop or asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        producer = self._producer
        if producer is None:
            done.set_exception(ProduceFailed("the producer is not started"))
            return done

        def report(err: RdKafkaError | None, _msg: Message) -> None:
            self._report(done, err, producer)

        try:
            producer.produce(record.topic, value=record.value, key=record.key,
                             partition=record.partition, headers=record.headers,
                             on_delivery=report)
            if self._sent is not None:
                self._sent.set()
        except BufferError:
            return None
        except KafkaException as exc:
            error: RdKafkaError = exc.args[0]
            if error.fatal():
                self._renew(producer)
            done.set_exception(ProduceFailed(error.str()))
        return done

    def _renew(self, old: Producer) -> None:
        """After a fatal error (the idempotent producer's sequence is broken, say) every
        later send would fail: start a new producer; the old one's records fail now, so
        their senders retry on the new one. Only once per producer: the old one's other
        fatal reports find it replaced already."""
        if old is not self._producer:
            return
        log.error("the Kafka producer hit a fatal error; starting a new one")
        self._producer = Producer(self._config, logger=logging.getLogger("hookstream.kafka"))
        old.purge()
        old.poll(0)  # the purged records' reports: their futures fail at the pump's next turn
        if self._sent is not None:
            self._sent.set()  # which is now, if it was idle

    # -- the pump and the way back ------------------------------------------------------
    async def _pump(self) -> None:
        """On the loop: serve librdkafka's reports (poll(0) never blocks), then settle them."""
        assert self._sent is not None
        while True:
            producer = self._producer  # a new one after _renew
            try:
                if producer is not None:
                    producer.poll(0)
                    self._settle()
                    if len(producer):  # records queued, in flight, or their reports
                        await asyncio.sleep(_PUMP_S)
                        continue
            except Exception:
                # The pump must not die: every later send would wait for ever.
                log.exception("the Kafka producer's poll failed; polling on")
            self._sent.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_IDLE_POLL_S):
                    await self._sent.wait()

    def _report(self, done: asyncio.Future[None], err: RdKafkaError | None,
                producer: Producer) -> None:
        """In poll (the pump's, on the loop, which settles next) or in flush's thread (at
        stop: the loop is woken to settle)."""
        with self._lock:
            self._reports.append((done, err, producer))
            first = len(self._reports) == 1
        if first and threading.get_ident() != self._loop_thread and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        """On the loop: hand every queued outcome to its future."""
        with self._lock:
            reports, self._reports = self._reports, []
        broken: Producer | None = None
        for done, err, producer in reports:
            if err is not None and err.fatal():
                broken = producer
            if done.done():
                continue  # its sender was cancelled
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(ProduceFailed(err.str()))
        if broken is not None:
            self._renew(broken)
