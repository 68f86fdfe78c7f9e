"""Messages that do not decode or validate go to hookstream.invalid, with the reason.

The original bytes are kept as they came, and the source topic, partition, offset and error
ride in headers (streams.delivery.routing.quarantined), so an operator can inspect, fix and
re-publish them. Nothing is lost and the pipeline goes on. This is the faust agents' side;
the stages produce the same record through their own producer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from faust.types import EventT

from . import metrics
from .app import raw_topic, settings
from .delivery.routing import Origin, quarantined
from .schemas import SchemaError
from .topics import INVALID

T = TypeVar("T")

log = logging.getLogger(__name__)

invalid_topic = raw_topic(INVALID)


async def quarantine(event: EventT[Any], reason: str) -> None:
    message = event.message
    log.warning(
        "quarantined %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
    )
    metrics.INVALID.labels(topic=message.topic.removeprefix(settings.topic_prefix)).inc()
    record = quarantined(Origin(message.topic, message.partition, message.offset),
                         message.key, message.value or b"", reason)
    await invalid_topic.send(key=message.key, value=record.value, headers=list(record.headers))


async def decoded(stream: Any, decode: Callable[[bytes], T],
                  what: str) -> AsyncIterator[tuple[EventT[Any], T]]:
    """The stream's events with their decoded values; undecodable ones are quarantined."""
    async for event in stream.events():
        try:
            value = decode(event.value or b"")
        except SchemaError as exc:
            await quarantine(event, f"invalid {what}: {exc}")
            continue
        yield event, value
