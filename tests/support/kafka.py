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
