"""Reading topics back in tests, with deadlines (never sleeps)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient


class TopicReader:
    """Reads a whole topic from the beginning and keeps tailing it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.messages: list[Any] = []
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
        partitions = metadata.topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])

    def poll(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            msg = self._consumer.poll(min(remaining, 0.1))
            if msg is not None and msg.error() is None:
                self.messages.append(msg)

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 30.0,
                 what: str = "condition") -> list[Any]:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on "
                                     f"{self.topic}; have {len(self.messages)} messages")
            self.poll(0.2)
        return self.messages

    def close(self) -> None:
        self._consumer.close()


def read_to_end(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record in `topic` up to its end offsets as of this call: all of it, however
    long that takes (never a fixed time that may stop short)."""
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"test-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        ends = {}
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end in {timeout}s")
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            found.append(message)
            if (message.offset() or 0) + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return found
    finally:
        consumer.close()
