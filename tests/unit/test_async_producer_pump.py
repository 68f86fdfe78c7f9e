"""The stages' producer (streams.kafka.asyncproducer) on a fake librdkafka producer: the
loop's pump hands every report to its sender, and a fatal error moves the sends to a new
producer while the old one's records fail, so their senders retry. (On the real broker:
tests/integration/test_async_producer.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.kafka import asyncproducer
from streams.kafka.asyncproducer import AsyncProducer, ProduceFailed

Report = Callable[[KafkaError | None, Any], None]


class FakeProducer:
    """librdkafka's surface as AsyncProducer uses it: produce queues a report, which the
    broker answers (`acknowledge`) and poll then serves; `broken` makes produce fail fatally."""

    made: list[FakeProducer] = []

    def __init__(self, config: dict[str, Any], logger: Any = None) -> None:
        self.queued: list[tuple[bytes | None, Report]] = []  # not yet answered
        self.answered: list[tuple[KafkaError | None, Report]] = []  # for poll to serve
        self.broken = False
        self.polls = 0
        FakeProducer.made.append(self)

    def produce(self, topic: str, *, value: bytes | None, key: bytes | None, partition: int,
                headers: Any, on_delivery: Report) -> None:
        if self.broken:
            raise KafkaException(KafkaError(KafkaError._FATAL, "sequence broken", fatal=True))
        self.queued.append((value, on_delivery))

    def acknowledge(self) -> None:
        self.answered += [(None, report) for _, report in self.queued]
        self.queued = []

    def purge(self) -> None:
        self.answered += [(KafkaError(KafkaError._PURGE_QUEUE), r) for _, r in self.queued]
        self.queued = []

    def poll(self, timeout: float) -> int:
        self.polls += 1
        served, self.answered = self.answered, []
        for err, report in served:
            report(err, None)
        return len(served)

    def flush(self, timeout: float) -> int:
        self.acknowledge()
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return len(self.queued) + len(self.answered)


@pytest.fixture(autouse=True)
def fake_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeProducer.made = []
    monkeypatch.setattr(asyncproducer, "Producer", FakeProducer)


async def _settled(future: Awaitable[Any]) -> None:
    """Awaits a send; the pump polls every millisecond while records are in flight."""
    await asyncio.wait_for(future, timeout=5)


@contextlib.asynccontextmanager
async def _started() -> AsyncIterator[AsyncProducer]:
    """A started producer on the fake, stopped after the test's body."""
    producer = AsyncProducer({})
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def test_reports_reach_their_senders_from_idle_and_under_load() -> None:
    async def main() -> None:
        async with _started() as producer:
            fake = FakeProducer.made[0]
            first = producer.send("t", value=b"first")
            fake.acknowledge()
            await _settled(first)  # sent to an idle pump
            burst = [producer.send("t", value=b"%d" % n) for n in range(200)]
            fake.acknowledge()
            await _settled(asyncio.gather(*burst))
            # One poll serves many reports: far fewer polls than records.
            assert fake.polls < 100

    asyncio.run(main())


def test_a_fatal_error_fails_the_old_producers_records_and_sends_go_to_a_new_one() -> None:
    async def main() -> None:
        async with _started() as producer:
            old = FakeProducer.made[0]
            waiting = producer.send("t", value=b"sent before")  # never answered by old
            old.broken = True
            with pytest.raises(ProduceFailed, match="sequence broken"):
                await _settled(producer.send("t", value=b"refused"))
            with pytest.raises(ProduceFailed, match="Purged"):
                await _settled(waiting)  # failed, so its sender sends it again
            assert len(FakeProducer.made) == 2
            new = FakeProducer.made[1]
            after = producer.send("t", value=b"after")
            assert [value for value, _ in new.queued] == [b"after"]
            new.acknowledge()
            await _settled(after)

    asyncio.run(main())


def test_stop_acknowledges_what_was_sent_from_flushs_thread() -> None:
    async def main() -> None:
        producer = AsyncProducer({})
        await producer.start()
        sending = producer.send("t", value=b"last")
        await producer.stop()  # the fake's flush answers it, in a thread of asyncio's
        await _settled(sending)

    asyncio.run(main())
