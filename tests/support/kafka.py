"""Reading topics back in tests, and consumer groups as the broker sees them, with deadlines
(never sleeps)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

_log = logging.getLogger(__name__)


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


def _watermarks(consumer: Consumer, topics: list[str],
                timeout: float) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) of every partition of `topics`, asked of the broker now (not cached)."""
    metadata = consumer.list_topics(timeout=timeout)
    marks = {}
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise AssertionError(f"{topic}: not on the broker ({described and described.error})")
        for p in described.partitions:
            marks[(topic, p)] = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout, cached=False)
    return marks


@dataclass(frozen=True)
class Stored:
    """One record as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def read_all_to_end(bootstrap: str, topics: list[str],
                    timeout: float = 120.0) -> dict[str, list[Stored]]:
    """Every record of every partition of `topics`, from its low watermark to the high
    watermark taken when this is called: done when the consumer's position reaches that
    end on every partition (gaps left by compaction and control records included), however
    long that takes up to `timeout`. Uncommitted transactional records are read too."""
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"test-scan-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_uncommitted",
                         "enable.partition.eof": True})
    try:
        ends = {}
        starts = []
        for (topic, p), (low, high) in _watermarks(consumer, topics, timeout).items():
            if high > low:
                ends[(topic, p)] = high
                starts.append(TopicPartition(topic, p, low))
        found: dict[str, list[Stored]] = {topic: [] for topic in topics}
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise AssertionError(f"not read to the end in {timeout}s: {sorted(ends)}")
            message = consumer.poll(0.5)
            if message is not None:
                error = message.error()
                if error is None:
                    found[message.topic()].append(Stored(
                        message.topic(), message.partition(), message.offset(), message.key(),
                        message.value(), tuple(message.headers() or ())))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"reading {message.topic()}: {error}")
            remaining = [TopicPartition(t, p) for t, p in ends]
            for tp in consumer.position(remaining):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        return found
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topics: list[str],
              timeout: float = 30.0) -> dict[str, int]:
    """Records of `topics` the consumer group `group` has not committed yet, per topic: the
    high watermark minus the committed offset (the low watermark where none is)."""
    # A consumer that never subscribes: it asks the group's coordinator, never joins.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        marks = _watermarks(consumer, topics, timeout)
        committed = consumer.committed([TopicPartition(t, p) for t, p in marks],
                                       timeout=timeout)
        lag = dict.fromkeys(topics, 0)
        for tp in committed:
            low, high = marks[(tp.topic, tp.partition)]
            done = tp.offset if tp.offset >= 0 else low
            lag[tp.topic] += max(0, high - done)
        return lag
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, partitions: list[tuple[str, int]],
                      timeout: float = 30.0) -> dict[tuple[str, int], int]:
    """The offsets `group` committed on these partitions (negative where none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(
            [TopicPartition(t, p) for t, p in partitions], timeout=timeout)}
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"test-marks-{uuid.uuid4().hex}"})
    try:
        return {p: high for (_, p), (_, high) in _watermarks(consumer, [topic],
                                                             timeout).items()}
    finally:
        consumer.close()


def group_members(bootstrap: str, group: str,
                  timeout: float = 30.0) -> dict[str, set[tuple[str, int]]]:
    """The members of a consumer group as the broker describes it now, each with the
    partitions assigned to it (member id -> {(topic, partition)})."""
    # librdkafka's notices (a destroyed client's unserved queue) go to logging, not stderr.
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=_log)
    description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(
        timeout)
    return {m.member_id: {(tp.topic, tp.partition) for tp in
                          (m.assignment.topic_partitions if m.assignment else [])}
            for m in description.members}
