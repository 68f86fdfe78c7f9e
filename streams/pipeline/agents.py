"""Messages that do not decode or validate go to hookstream.invalid, with the reason.

The original bytes are kept as they came, and the source topic, partition, offset and error
ride in headers (streams.delivery.routing.quarantined), so an operator can inspect, fix and
re-publish them. Nothing is lost and the pipeline goes on. This is the faust agents' side;
the stages produce the same record through their own producer (streams.pipeline.stage).

No record may make an agent raise: faust's supervisor restarts an agent that does, and the
record it raised on is gone, neither applied nor quarantined (so went the control agent's
`[` nested 5,000 deep), or it stops for good. So `Agents.each` runs an agent's body record by
record: bad input (the decoder's error, or one the body names in `rejects`) is quarantined
at once; any other exception is retried like a stage's handler
(streams.pipeline.stage.HANDLER_ATTEMPTS), then the record is quarantined with the reason and
counted (`hookstream_handler_failures_total`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from faust.types import EventT, TopicT

from ..core.schemas import SchemaError
from ..kafka.topics import INVALID_MAX_MESSAGE_BYTES
from ..settings import Settings
from ..telemetry import metrics
from .records import Origin, quarantine_copy
from .stage import HANDLER_ATTEMPTS, HANDLER_BACKOFF_S, handler_failure

T = TypeVar("T")
V = TypeVar("V")
#: A record's bytes -> what its quarantined copy may keep of them.
Redact = Callable[[bytes], bytes]

log = logging.getLogger(__name__)


class Agents:
    """Runs faust agents' bodies record by record under the rule above; built per app."""

    def __init__(self, app: faust.App, settings: Settings, invalid: TopicT) -> None:
        self._prefix = settings.topic_prefix
        self._invalid = invalid  # hookstream.invalid, as the runtime declares it
        # faust's producer refuses records over its own limit (1,000,000 bytes by default),
        # smaller than what the broker accepts on an input topic: such a copy is cut to fit.
        self._limit = min(app.conf.producer_max_request_size, INVALID_MAX_MESSAGE_BYTES)

    async def quarantine(self, event: EventT[Any], reason: str,
                         redact: Redact | None = None) -> None:
        message = event.message
        log.warning("quarantined %s[%d]@%d: %s", message.topic, message.partition,
                    message.offset, reason)
        metrics.INVALID.labels(topic=message.topic.removeprefix(self._prefix)).inc()
        value = message.value or b""
        record = quarantine_copy(Origin(message.topic, message.partition, message.offset),
                                 message.key, redact(value) if redact else value, reason,
                                 self._limit)
        key = None if message.key is None else record.key.encode("utf-8", "surrogateescape")
        # Attached to the event: sent before its offset is committed.
        await self._invalid.send(key=key, value=record.value, headers=list(record.headers))

    async def each(self, stream: Any, decode: Callable[[bytes], T], what: str,
                   handler: Callable[[EventT[Any], T], Awaitable[None]], *, stage: str,
                   rejects: tuple[type[Exception], ...] = (SchemaError,),
                   redact: Redact | None = None) -> None:
        """Decode each event of `stream` and hand it to `handler`; never raises (but for
        cancellation). `stage` names the agent in metrics; `redact` makes the copy of a
        quarantined record (what hookstream.invalid may keep of it)."""
        async for event in stream.events():
            decoded = await self._decoded(event, decode, what, redact)
            if decoded is not None:
                await self._handled(event, decoded[0], handler, what, stage, rejects, redact)

    async def _decoded(self, event: EventT[Any], decode: Callable[[bytes], T], what: str,
                       redact: Redact | None) -> tuple[T] | None:
        """(the event's value decoded,), or None once it is quarantined."""
        try:
            return (decode(event.value or b""),)
        except Exception as exc:  # decoders raise their domain error; nothing may stop us
            detail = (str(exc) if isinstance(exc, ValueError)
                      else f"{type(exc).__name__}: {exc}")
            await self._quarantine_or_log(event, f"invalid {what}: {detail}", redact)
            return None

    async def _handled(self, event: EventT[Any], value: V,
                       handler: Callable[[EventT[Any], V], Awaitable[None]], what: str,
                       stage: str, rejects: tuple[type[Exception], ...],
                       redact: Redact | None) -> None:
        """`handler(event, value)`, tried HANDLER_ATTEMPTS times; then the event is
        quarantined with the reason."""
        message = event.message
        for attempt in range(1, HANDLER_ATTEMPTS + 1):
            try:
                await handler(event, value)
                return
            except rejects as exc:
                await self._quarantine_or_log(event, f"invalid {what}: {exc}", redact)
                return
            except Exception as exc:
                if attempt < HANDLER_ATTEMPTS:
                    log.warning("%s[%d]@%d: %s agent failed (%s: %s); trying again",
                                message.topic, message.partition, message.offset, stage,
                                type(exc).__name__, exc)
                    await asyncio.sleep(HANDLER_BACKOFF_S[attempt - 1])
                    continue
                reason = handler_failure(attempt, exc)
                log.error("%s[%d]@%d: %s", message.topic, message.partition, message.offset,
                          reason, exc_info=exc)
                metrics.HANDLER_FAILURES.labels(stage=stage).inc()
                await self._quarantine_or_log(event, reason, redact)

    async def _quarantine_or_log(self, event: EventT[Any], reason: str,
                                 redact: Redact | None) -> None:
        try:
            await self.quarantine(event, reason, redact)
        except Exception:
            # Attaching a record to the event does not talk to the broker, so only a bug
            # gets here. Raising would stop the agent and every partition it reads; the
            # record stays on its source topic, which this line names.
            message = event.message
            log.exception("%s[%d]@%d: cannot quarantine (%s); going on", message.topic,
                          message.partition, message.offset, reason)
