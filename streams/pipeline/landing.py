"""Producing until the broker took a record: the one rule for what the pipeline writes.

A record is not done before every in-sync replica has it (the stages' offsets, and the
history feeder's, follow that), so a send the broker refuses is sent again, backing off,
for as long as it takes (`until_landed`): only the broker being away holds a record.
What the broker would refuse on every try is told apart before anything is sent
(`RecordTooLarge`): a record over its topic's limit would never land, and its refusal
would also break the idempotent producer's sequence on that partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NamedTuple

from aiokafka.errors import KafkaError

from ..kafka.topics import max_message_bytes
from ..settings import Settings
from .clients import Producer
from .records import Produce, encoded_key, record_size

log = logging.getLogger(__name__)


class RecordTooLarge(Exception):
    """A record over its topic's size limit: the broker would refuse it on every try."""


async def until_landed(sending: Awaitable[object], resend: Callable[[], Awaitable[object]],
                       what: str) -> None:
    """Await a send; while the broker refuses it, send it again (`resend`), backing off from
    0.5 s to 10 s: whatever waits on it is not done before. `what` names it in the log."""
    delay = 0.5
    while True:
        try:
            await sending
            return
        except KafkaError as exc:
            log.warning("producing %s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            sending = resend()


class _Outgoing(NamedTuple):
    """A Produce as the producer takes it: prefixed topic, encoded key."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None


def _outgoing(settings: Settings, record: Produce) -> _Outgoing:
    key = encoded_key(record)
    headers = list(record.headers)
    size, limit = record_size(key, record.value, headers), max_message_bytes(record.topic)
    if size > limit:
        raise RecordTooLarge(f"a record of {size} bytes for {record.topic}, "
                             f"over its limit of {limit}")
    return _Outgoing(settings.topic(record.topic), record.value, key, headers or None)


async def land(producer: Producer, settings: Settings, records: list[Produce]) -> None:
    """Produce these records (acks=all), each retried until it lands; returns when all
    have. All are handed to the producer at once, then awaited in turn (a task per record,
    as gather made, cost a loaded worker about a tenth of its CPU). Raises RecordTooLarge
    before any is sent if one of them is over its topic's limit."""
    outgoing = [_outgoing(settings, record) for record in records]
    sends = [(out, producer.send(*out)) for out in outgoing]
    for out, sending in sends:
        await until_landed(sending, partial(producer.send, *out), f"to {out.topic}")
