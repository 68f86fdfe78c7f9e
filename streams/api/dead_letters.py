"""/v1/dead-letters and /v1/webhooks/{id}/replay: read from every worker's index of the
dead-letter topic (streams.dlq), never from the topic on a request."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.web import Request

from ..core.apikeys import Principal
from ..core.timeutil import iso_from_ms, parse_iso
from ..dlq.index import decode_cursor, encode_cursor
from ..dlq.replay import fetch_letters, replay
from . import validation as v
from .endpoint import Endpoint, api, body_of


class DeadLetters(Endpoint):
    @api
    async def get(self, request: Request, principal: Principal) -> tuple[int, Any]:
        """Dead letters of the caller's workspace (any, for the admin), newest first."""
        webhook_id = request.query.get("webhook_id")
        reason = request.query.get("reason")
        workspace = request.query.get("workspace_id")
        if not principal.is_admin:
            if workspace not in (None, principal.workspace_id):
                raise v.invalid("workspace_id", "a workspace key sees its own workspace only")
            workspace = principal.workspace_id
        limit = v.limit(request.query.get("limit"))
        raw_cursor = request.query.get("cursor")
        try:
            before = decode_cursor(raw_cursor) if raw_cursor else None
        except ValueError:
            raise v.invalid("cursor", "is not a cursor from this API") from None
        if webhook_id is not None:
            await self.ctx.current(principal, webhook_id)
        view = self.ctx.dead_letters
        await view.sync()
        letters, after = view.index.page(workspace_id=workspace, webhook_id=webhook_id,
                                         reason=reason, before=before, limit=limit)
        return 200, {"data": [{
            "delivery_id": d.delivery_id, "webhook_id": d.webhook_id,
            "workspace_id": d.workspace_id, "event": d.event_type, "event_id": d.event_id,
            "reason": d.reason, "error": d.error, "attempts": d.attempts,
            "dead_at": iso_from_ms(d.dead_at), "replayed": view.index.replayed(d),
        } for d in letters], "next_cursor": encode_cursor(after) if after else None}


class Replay(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        """Re-queue the webhook's dead letters (within since/until) not yet replayed."""
        await self.ctx.current(principal, webhook_id)
        body = await body_of(request, required=False)
        v.reject_unknown(body, {"since", "until"})
        bounds = {}
        for name in ("since", "until"):
            raw = body.get(name)
            if raw is None:
                continue
            try:
                bounds[name] = int(parse_iso(str(raw)).timestamp() * 1000)
            except ValueError:
                raise v.invalid(name, "must be an ISO 8601 time with a zone") from None
        view = self.ctx.dead_letters
        await view.sync()
        chosen = [d for d in view.index.of_webhook(webhook_id)
                  if bounds.get("since", d.dead_at) <= d.dead_at <= bounds.get("until", d.dead_at)]
        pending = [d for d in chosen if not view.index.replayed(d)]
        settings = self.ctx.settings
        letters = await asyncio.to_thread(fetch_letters, settings,
                                          [(d.partition, d.offset) for d in pending])
        count = await asyncio.to_thread(replay, settings, letters)
        return 200, {"replayed": count, "already_replayed": len(chosen) - len(pending)}
