"""The records stages exchange: where one was read from, what to produce, and the copy of a
bad input that goes to hookstream.invalid. Pure but for the batch-size arithmetic, which is
the Kafka client's own."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from ..kafka.topics import INVALID

#: Header of a quarantined copy that had to be cut to fit: the original value's length.
TRUNCATED_HEADER = "hookstream-truncated"


@dataclass(frozen=True)
class Origin:
    """The record a job was consumed from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Produce:
    """One record to produce; `topic` is the unprefixed name."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def quarantined(origin: Origin, key: bytes | None, value: bytes, reason: str) -> Produce:
    """An undecodable job, kept as it came on hookstream.invalid with where and why."""
    return Produce(INVALID, (key or b"").decode("utf-8", "replace"), value, (
        ("hookstream-source-topic", origin.topic.encode()),
        ("hookstream-source-partition", str(origin.partition).encode()),
        ("hookstream-source-offset", str(origin.offset).encode()),
        ("hookstream-error", reason[:1000].encode()),
    ))


def record_size(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of the bytes one record takes in a batch of its own, as the producer
    and the broker count them against their limits."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def encoded_key(record: Produce) -> bytes:
    """`surrogateescape`: a quarantined record's key that was not UTF-8 goes out as it came."""
    return record.key.encode("utf-8", "surrogateescape")


def quarantine_copy(origin: Origin, key: bytes | None, value: bytes, reason: str,
                    limit: int) -> Produce:
    """The hookstream.invalid record for this input (`quarantined`),
    with its key kept byte for byte, and cut to fit in `limit` bytes if it must be.

    hookstream.invalid takes twice what any other topic does, so a copy is cut only when
    the broker accepted a bigger record than our topics do, or a producer's own limit is
    lower (faust's: 1,000,000 bytes). Then the value keeps what fits, the header
    `hookstream-truncated` says how long it was, and the source headers still point at
    the whole original.
    """
    copy = replace(quarantined(origin, None, value, reason),
                   key=(key or b"").decode("utf-8", "surrogateescape"))
    headers = list(copy.headers)
    if record_size(encoded_key(copy), value, headers) <= limit:
        return copy
    headers.append((TRUNCATED_HEADER, str(len(value)).encode()))
    if record_size(encoded_key(copy), b"", headers) > limit:
        copy = replace(copy, key="")  # a key that alone is too big: the source has it
    room = limit - record_size(encoded_key(copy), b"", headers) - 8  # 8: a longer varint
    return replace(copy, value=value[:max(0, room)], headers=tuple(headers))
