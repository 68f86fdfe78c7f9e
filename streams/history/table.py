"""Each webhook's recent delivery history: its last 1,000 attempts, newest first.

A faust table built from hookstream.delivery-log (keyed by webhook id), partitioned like it.
Every attempt writes one small entry, never the whole history:
    <webhook>\\0<seq % 1000>  -> seq (8 bytes, big-endian) + the attempt record (Avro)
so each webhook is a ring of 1,000 slots, and the compacted changelog
(hookstream.delivery-history) holds at most 1,000 records per webhook. The newest seq is
kept in memory; after a restart or rebalance it is found again by reading the webhook's
slots once. (Before, a `<webhook>\\0head` entry was written on every attempt too: half of
the history's cost. Slots and heads written that way are still read.)

The table lives on the worker that owns the webhook's partition; web views reach it with
streams.api.forwarding, which forwards a request to that worker (without the caller's key).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

from faust.types import EventT

from ..api.auth import may_see
from ..api.forwarding import answered_by_owner
from ..delivery.models import AttemptRecord
from ..kafka.topics import DELIVERY_HISTORY, DELIVERY_LOG
from ..pipeline.agents import each
from ..runtime.app import app, raw_table, raw_topic

log = logging.getLogger(__name__)

KEPT = 1000
_SEQ = struct.Struct(">Q")
#: Avro single-object encoding's marker: a slot written before seqs were stored.
_LEGACY = b"\xc3\x01"

delivery_log = raw_topic(DELIVERY_LOG)
history = raw_table("delivery-history", changelog=DELIVERY_HISTORY)

#: Newest seq per webhook, for the partitions this worker holds (forgotten on rebalance).
_newest: dict[str, int] = {}


def _legacy_head(webhook_id: str) -> bytes:
    return f"{webhook_id}\x00head".encode()


def _slot(webhook_id: str, seq: int) -> bytes:
    return f"{webhook_id}\x00{seq % KEPT}".encode()


def _unpack(stored: bytes) -> tuple[int | None, bytes]:
    """(seq, attempt record) of a slot; seq is None for a slot written before seqs."""
    if stored[:2] == _LEGACY:
        return None, stored
    return _SEQ.unpack_from(stored)[0], stored[_SEQ.size:]


def newest_seq(webhook_id: str) -> int:
    seq = _newest.get(webhook_id)
    if seq is None:
        seq = int(history.get(_legacy_head(webhook_id), b"0"))
        for slot in range(KEPT):
            stored = history.get(_slot(webhook_id, slot))
            if stored is not None:
                seq = max(seq, _unpack(stored)[0] or 0)
        _newest[webhook_id] = seq
    return seq


@app.on_partitions_revoked.connect
async def _forget_newest(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    # Partitions may come back after another worker wrote to them: read the slots again.
    _newest.clear()


@app.agent(delivery_log)
async def record_history(stream):  # type: ignore[no-untyped-def]
    # An attempt record that does not decode, or whose handling keeps failing, is
    # quarantined and the agent goes on (streams.pipeline.agents.each).
    await each(stream, AttemptRecord.decode, "attempt record", _record, stage="history")


async def _record(event: EventT[Any], record: AttemptRecord) -> None:
    seq = newest_seq(record.webhook_id) + 1
    history[_slot(record.webhook_id, seq)] = _SEQ.pack(seq) + event.value
    _newest[record.webhook_id] = seq


@dataclass(frozen=True)
class Page:
    records: list[AttemptRecord]
    #: Pass back as `cursor` for the next (older) page; None at the end.
    next_cursor: int | None


def page(webhook_id: str, *, status: str | None = None, limit: int = 50,
         cursor: int | None = None) -> Page:
    """Newest-first attempts of one webhook (this worker must own it: see
    streams.api.forwarding)."""
    newest = newest_seq(webhook_id)
    oldest = max(1, newest - KEPT + 1)
    seq = newest if cursor is None else min(cursor - 1, newest)
    found: list[AttemptRecord] = []
    while seq >= oldest and len(found) < limit:
        stored = history.get(_slot(webhook_id, seq))
        expected, seq = seq, seq - 1
        if stored is None:
            continue
        stored_seq, value = _unpack(stored)
        if stored_seq not in (None, expected):
            continue  # an older lap of the ring, left by a crash before it was overwritten
        record = AttemptRecord.decode(value)
        if status is None or record.status == status:
            found.append(record)
    return Page(found, seq + 1 if seq >= oldest else None)


def summary(webhook_id: str, window: int = 100) -> dict[str, object]:
    """Last success, last failure and failures among the last `window` attempts."""
    last_success = last_failure = None
    failures = 0
    for record in page(webhook_id, limit=window).records:
        if record.status == "success":
            last_success = last_success or record.attempted_at
        else:
            failures += 1
            last_failure = last_failure or record.attempted_at
    return {"last_success_at": last_success, "last_failure_at": last_failure,
            "recent_failures": failures}


@app.page("/internal/webhooks/{webhook_id}/summary")
@answered_by_owner(history, "webhook_id")
async def summary_view(web, request, webhook_id: str, principal):  # type: ignore[no-untyped-def]
    """For the console's list: routed to the worker holding the webhook's history."""
    if not may_see(principal, webhook_id):
        return web.json({"error": "not found"}, status=404)
    return web.json(summary(webhook_id))


@app.page("/internal/webhooks/{webhook_id}/attempts")
@answered_by_owner(history, "webhook_id")
async def attempts_view(web, request, webhook_id: str, principal):  # type: ignore[no-untyped-def]
    """History of one webhook, routed to the worker that owns it (for the API and tests)."""
    if not may_see(principal, webhook_id):
        return web.json({"error": "not found"}, status=404)
    try:
        limit = int(request.query.get("limit", "50"))
        cursor = int(request.query["cursor"]) if "cursor" in request.query else None
    except ValueError:
        return web.json({"error": "limit and cursor must be whole numbers"}, status=400)
    if not 1 <= limit <= 1000:
        return web.json({"error": "limit must be between 1 and 1000"}, status=400)
    result = page(webhook_id, status=request.query.get("status"), limit=limit, cursor=cursor)
    return web.json({"data": [r.to_record() for r in result.records],
                     "next_cursor": result.next_cursor})
