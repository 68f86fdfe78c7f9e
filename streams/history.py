"""Each webhook's recent delivery history: its last 1,000 attempts, newest first.

A faust table built from hookstream.delivery-log (keyed by webhook id), partitioned like it.
Every attempt writes one small entry, and each batch of attempts one head per webhook,
never the whole history:
    <webhook>\\0head          -> the number of attempts seen (as text)
    <webhook>\\0<seq % 1000>  -> the attempt record (Avro DeliveryAttempt)
so each webhook is a ring of 1,000 slots, and the compacted changelog
(hookstream.delivery-history) holds at most 1,001 records per webhook.

The table lives on the worker that owns the webhook's partition; web views reach it with
faust's table_route, which forwards a request to that worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .api.auth import may_see, principal_of
from .app import app, raw_table, raw_topic
from .delivery.models import AttemptRecord
from .quarantine import quarantine
from .schemas import SchemaError
from .topics import DELIVERY_HISTORY, DELIVERY_LOG

log = logging.getLogger(__name__)

KEPT = 1000
#: Attempt records handled together, and the longest a record waits for its batch.
BATCH = 500
BATCH_WITHIN_S = 0.05

delivery_log = raw_topic(DELIVERY_LOG)
history = raw_table("delivery-history", changelog=DELIVERY_HISTORY)


def _head(webhook_id: str) -> bytes:
    return f"{webhook_id}\x00head".encode()


def _slot(webhook_id: str, seq: int) -> bytes:
    return f"{webhook_id}\x00{seq % KEPT}".encode()


@app.agent(delivery_log)
async def record_history(stream):  # type: ignore[no-untyped-def]
    # In batches: each webhook's head is written once a batch, not once an attempt, which
    # halves the table's changelog writes (each is a faust send, the history's main cost).
    # A crash before the heads are written replays the batch onto the same slots.
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        heads: dict[str, int] = {}
        for event in events:
            try:
                record = AttemptRecord.decode(event.value or b"")
            except SchemaError as exc:
                await quarantine(event, f"invalid attempt record: {exc}")
                continue
            webhook_id = record.webhook_id
            seq = heads.get(webhook_id)
            if seq is None:
                seq = int(history.get(_head(webhook_id), b"0"))
            heads[webhook_id] = seq = seq + 1
            history[_slot(webhook_id, seq)] = event.value
        for webhook_id, seq in heads.items():
            history[_head(webhook_id)] = str(seq).encode()


@dataclass(frozen=True)
class Page:
    records: list[AttemptRecord]
    #: Pass back as `cursor` for the next (older) page; None at the end.
    next_cursor: int | None


def page(webhook_id: str, *, status: str | None = None, limit: int = 50,
         cursor: int | None = None) -> Page:
    """Newest-first attempts of one webhook (this worker must own it: use table_route)."""
    newest = int(history.get(_head(webhook_id), b"0"))
    oldest = max(1, newest - KEPT + 1)
    seq = newest if cursor is None else min(cursor - 1, newest)
    found: list[AttemptRecord] = []
    while seq >= oldest and len(found) < limit:
        stored = history.get(_slot(webhook_id, seq))
        seq -= 1
        if stored is None:
            continue
        record = AttemptRecord.decode(stored)
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
@app.table_route(table=history, match_info="webhook_id")
async def summary_view(web, request, webhook_id: str):  # type: ignore[no-untyped-def]
    """For the console's list: routed to the worker holding the webhook's history."""
    if not may_see(principal_of(request), webhook_id):
        return web.json({"error": "not found"}, status=404)
    return web.json(summary(webhook_id))


@app.page("/internal/webhooks/{webhook_id}/attempts")
@app.table_route(table=history, match_info="webhook_id")
async def attempts_view(web, request, webhook_id: str):  # type: ignore[no-untyped-def]
    """History of one webhook, routed to the worker that owns it (for the API and tests)."""
    if not may_see(principal_of(request), webhook_id):
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
