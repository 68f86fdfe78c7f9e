"""Messages that do not decode or validate go to hookstream.invalid, with the reason.

The original bytes are kept as they came, and the source topic, partition, offset and error
ride in headers, so an operator can inspect, fix and re-publish them. Nothing is lost and
the pipeline goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from .app import app, settings
from .topics import INVALID

log = logging.getLogger(__name__)

invalid_topic = app.topic(
    settings.topic(INVALID), key_serializer="raw", value_serializer="raw", internal=False
)

MAX_REASON = 1000


async def quarantine(event: EventT[Any], reason: str) -> None:
    message = event.message
    log.warning(
        "quarantined %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
    )
    await invalid_topic.send(
        key=message.key,
        value=message.value if message.value is not None else b"",
        headers=[
            ("hookstream-source-topic", message.topic.encode()),
            ("hookstream-source-partition", str(message.partition).encode()),
            ("hookstream-source-offset", str(message.offset).encode()),
            ("hookstream-error", reason[:MAX_REASON].encode()),
        ],
    )
