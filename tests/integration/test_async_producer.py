"""The stages' librdkafka producer (streams.kafka.asyncproducer) on the real broker: every
awaited send is on the topic, keyed records land where aiokafka's partitioner (Java's
murmur2) put them before, a refusal raises instead of hanging, and cancelling a sender
breaks nothing for the others."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.asyncproducer import AsyncProducer, ProduceFailed
from streams.pipeline.clients import kafka_producer
from streams.settings import Settings
from tests.support.kafka import read_to_end

PARTITIONS = 6


def _topic(bootstrap: str, max_message_bytes: int = 1_048_588) -> str:
    name = f"test-asyncproducer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(name, PARTITIONS, 1, config={
        "max.message.bytes": str(max_message_bytes)})])[name]
    future.result(timeout=30)
    return name


def _producer(bootstrap: str) -> AsyncProducer:
    producer = kafka_producer(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}))
    assert isinstance(producer, AsyncProducer)
    return producer


def test_every_awaited_send_is_on_the_topic_where_javas_partitioner_puts_it(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)
    keys = [f"wh_{i}".encode() for i in range(300)]

    async def main() -> None:
        producer = _producer(kafka_bootstrap)
        await producer.start()
        try:
            await asyncio.gather(*(
                producer.send_and_wait(topic, value=b"v" + key, key=key,
                                       headers=[("n", str(i).encode())])
                for i, key in enumerate(keys)))
        finally:
            await producer.stop()

    asyncio.run(main())
    found = read_to_end(kafka_bootstrap, topic)
    assert sorted(m.key() for m in found) == sorted(keys)
    partitioner = DefaultPartitioner()
    for message in found:
        assert message.partition() == partitioner(message.key(), list(range(PARTITIONS)), [])
        assert message.value() == b"v" + message.key()
        assert dict(message.headers())["n"] == str(keys.index(message.key())).encode()


def test_acknowledgements_are_served_on_the_loop_by_no_thread_of_ours(
        kafka_bootstrap: str) -> None:
    """Sends one at a time, the first from idle, then a burst: each is acknowledged, and
    the producer started no Python thread (a thread blocked in poll() took the GIL back
    from the loop for every report)."""
    topic = _topic(kafka_bootstrap)

    async def main() -> None:
        before = set(threading.enumerate())
        producer = _producer(kafka_bootstrap)
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait(topic, value=b"one %d" % n, key=b"k")
            await asyncio.gather(*(producer.send(topic, value=b"burst %d" % n, key=b"k")
                                   for n in range(500)))
            assert set(threading.enumerate()) == before
        finally:
            await producer.stop()

    asyncio.run(main())
    assert len(read_to_end(kafka_bootstrap, topic)) == 503


def test_a_record_the_broker_refuses_raises_and_the_producer_goes_on(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, max_message_bytes=10_000)

    async def main() -> None:
        producer = _producer(kafka_bootstrap)
        await producer.start()
        try:
            with pytest.raises(ProduceFailed):
                await producer.send_and_wait(topic, value=b"x" * 50_000, key=b"big")
            await producer.send_and_wait(topic, value=b"small", key=b"after")
        finally:
            await producer.stop()

    asyncio.run(main())
    assert [m.value() for m in read_to_end(kafka_bootstrap, topic)] == [b"small"]


def test_a_cancelled_sender_leaves_the_others_acknowledged(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    async def main() -> None:
        producer = _producer(kafka_bootstrap)
        await producer.start()
        try:
            sends = [asyncio.create_task(producer.send_and_wait(topic, value=b"%d" % i))
                     for i in range(100)]
            await asyncio.sleep(0)  # every sender has handed its record to librdkafka
            sends[0].cancel()
            results = await asyncio.gather(*sends, return_exceptions=True)
            assert isinstance(results[0], asyncio.CancelledError)
            assert results[1:] == [None] * 99
        finally:
            await producer.stop()

    asyncio.run(main())
    # Cancelling the wait does not take the record back: it was handed over already.
    assert len(read_to_end(kafka_bootstrap, topic)) == 100


def test_sending_before_start_or_after_stop_raises(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    async def main() -> None:
        producer = _producer(kafka_bootstrap)
        with pytest.raises(ProduceFailed, match="not started"):
            await producer.send_and_wait(topic, value=b"v")
        await producer.start()
        await producer.stop()
        with pytest.raises(ProduceFailed, match="not started"):
            await producer.send_and_wait(topic, value=b"v")

    asyncio.run(main())


def test_a_send_nobody_acknowledges_fails_when_the_producer_stops() -> None:
    """No broker answers: stop() waits its bound, then the sender is told, never left
    waiting (no Kafka needed: that is the point)."""
    from socket import socket

    with socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{unused.getsockname()[1]}"

    async def main() -> None:
        producer = AsyncProducer({"bootstrap.servers": nowhere, "acks": "all"},
                                 stop_flush_s=0.5)
        await producer.start()
        send = asyncio.create_task(producer.send_and_wait("anywhere", value=b"v"))
        await asyncio.sleep(0)  # the record is handed to librdkafka
        await producer.stop()
        with pytest.raises(ProduceFailed):
            await send

    asyncio.run(main())
