"""Reading a whole topic as it is now, then stopping (confluent-kafka), for the CLI and API."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ..settings import Settings
from .admin import AdminError, partitions_of

Record = tuple[int, int, bytes | None, bytes | None]


def read_topic(settings: Settings, topic: str) -> Iterator[Record]:
    """(partition, offset, key, value) of every record now in `topic`, then stop."""
    name = settings.topic(topic)
    partitions = partitions_of(settings.bootstrap_servers, name)
    yield from _read(settings, name, {p: (0, None) for p in partitions})


def read_partition(settings: Settings, topic: str, partition: int, start: int,
                   end: int) -> Iterator[Record]:
    """(partition, offset, key, value) of the records of one partition in [start, end)."""
    yield from _read(settings, settings.topic(topic), {partition: (start, end)})


def _read(settings: Settings, name: str,
          ranges: dict[int, tuple[int, int | None]]) -> Iterator[Record]:
    """The records of each partition in [start, end), `end` None for the end as of now."""
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"hookstream-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "logger": logging.getLogger("hookstream.kafka"),
    })
    try:
        yield from _records(consumer, name, ranges)
    except KafkaException as exc:
        raise AdminError(f"cannot read {name} from Kafka at {settings.bootstrap_servers}: "
                         f"{exc}") from None
    finally:
        consumer.close()


def _records(consumer: Consumer, name: str,
             ranges: dict[int, tuple[int, int | None]]) -> Iterator[Record]:
    starts, ends = {}, {}
    for p, (start, end) in ranges.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
        starts[p], ends[p] = max(start, low), high if end is None else min(end, high)
        if starts[p] >= ends[p]:
            del ends[p]
    consumer.assign([TopicPartition(name, p, starts[p]) for p in ends])
    while ends:
        message = consumer.poll(5.0)
        if message is None:
            raise RuntimeError(f"reading {name} stalled; is Kafka up?")
        if message.error() is not None:
            continue
        partition, offset = message.partition() or 0, message.offset() or 0
        if offset < ends.get(partition, 0):
            yield partition, offset, message.key(), message.value()
        if offset + 1 >= ends.get(partition, 0):
            ends.pop(partition, None)
