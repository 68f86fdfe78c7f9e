"""Every worker's index of the dead letters: hookstream.dlq and hookstream.dlq-replayed, tailed.

Only headers are read (the delivery stage writes the listing's fields there), so a worker
that starts onto a month of dead letters does not decode a month of payloads; a letter
without them (written before they existed) is decoded once.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.schemas import SchemaError
from ..delivery.models import DeadLetter
from ..kafka.compacted import CompactedView, Record
from .index import DeadLetterIndex, Letter

log = logging.getLogger(__name__)


class DeadLetterView:
    def __init__(self, bootstrap_servers: str, letters_topic: str, replayed_topic: str,
                 per_workspace: int) -> None:
        self.index = DeadLetterIndex(per_workspace)
        self._letters = CompactedView(bootstrap_servers, letters_topic, self._add)
        self._replayed = CompactedView(bootstrap_servers, replayed_topic, self._mark)
        self.ready = asyncio.Event()
        self._readiness: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._letters.start()
        await self._replayed.start()
        self._readiness = asyncio.create_task(self._set_ready())

    async def _set_ready(self) -> None:
        await asyncio.gather(self._letters.ready.wait(), self._replayed.ready.wait())
        self.ready.set()

    async def stop(self) -> None:
        if self._readiness is not None:
            self._readiness.cancel()
        await self._letters.stop()
        await self._replayed.stop()

    async def sync(self, timeout: float = 5.0) -> bool:
        """Caught up with both topics as they are now (a replay marked on another worker)."""
        done = await asyncio.gather(self._letters.sync(timeout), self._replayed.sync(timeout))
        return all(done)

    def _add(self, record: Record) -> None:
        try:
            letter = _from_headers(record) or _from_body(record)
        except (SchemaError, ValueError, KeyError, UnicodeDecodeError) as exc:
            log.warning("dead letter at %d:%d not listed: %s", record.partition, record.offset,
                        exc)
            return
        self.index.add(letter)

    def _mark(self, record: Record) -> None:
        if record.key is None or record.value is None:
            return
        partition, sep, offset = record.key.decode("utf-8", "replace").partition(":")
        if sep and partition.isdigit() and offset.isdigit():
            self.index.mark_replayed(int(partition), int(offset))


_LISTED = ("hookstream-workspace-id", "hookstream-event", "hookstream-event-id",
           "hookstream-dead-at", "hookstream-reason", "hookstream-delivery-id",
           "hookstream-attempts")


def _from_headers(record: Record) -> Letter | None:
    headers = {k: v.decode() for k, v in record.headers or ()
               if k in _LISTED or k == "hookstream-last-error"}
    if not all(name in headers for name in _LISTED) or record.key is None:
        return None
    return Letter(
        dead_at=int(headers["hookstream-dead-at"]), partition=record.partition,
        offset=record.offset, workspace_id=headers["hookstream-workspace-id"],
        webhook_id=record.key.decode(), delivery_id=headers["hookstream-delivery-id"],
        event_type=headers["hookstream-event"], event_id=headers["hookstream-event-id"],
        reason=headers["hookstream-reason"], error=headers.get("hookstream-last-error"),
        attempts=int(headers["hookstream-attempts"]))


def _from_body(record: Record) -> Letter:
    letter = DeadLetter.decode(record.value or b"")
    job = letter.job
    return Letter(
        dead_at=letter.dead_at, partition=record.partition, offset=record.offset,
        workspace_id=job.workspace_id, webhook_id=job.webhook_id,
        delivery_id=job.delivery_id, event_type=job.event_type, event_id=job.event_id,
        reason=letter.reason, error=letter.error, attempts=len(job.outcomes))
