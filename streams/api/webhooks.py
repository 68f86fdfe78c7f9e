"""/v1/webhooks: the documentation's API over control commands and the local tables."""

from __future__ import annotations

import uuid
from typing import Any

from faust.web import Request

from ..core.apikeys import Principal
from ..core.secretbox import SecretBox
from ..core.timeutil import iso_from_ms, now_ms
from ..delivery.models import FAILED, SUCCESS, AttemptRecord, DeliveryJob, delivery_id_for
from ..delivery.sender import attempt
from ..subscriptions.commands import generate_secret
from ..subscriptions.model import Subscription
from ..telemetry import metrics
from . import validation as v
from .endpoint import Endpoint, api, body_of
from .event_types import payload_for_test
from .validation import ApiError


def shown(sub: Subscription, secret: str | None = None) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret, but when just made (`secret`)."""
    record = sub.public()
    record["created_at"] = iso_from_ms(sub.created_at)
    record["updated_at"] = iso_from_ms(sub.updated_at)
    record["events"] = list(sub.events)
    if secret is not None:
        record["secret"] = secret  # only on create and rotate: store it now
    return record


def _seal_headers(box: SecretBox, fields: dict[str, Any]) -> None:
    """Custom header values leave the API sealed, as secrets do: never plaintext on a topic."""
    if "headers" in fields:
        fields["headers"] = {name: box.seal(value) for name, value in fields["headers"].items()}


class Webhooks(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal) -> tuple[int, Any]:
        ctx = self.ctx
        body = await body_of(request)
        workspace = body.get("workspace_id") if principal.is_admin else principal.workspace_id
        if not principal.is_admin and body.get("workspace_id") not in (None, workspace):
            raise v.invalid("workspace_id", "a workspace key acts for its own workspace only")
        if not isinstance(workspace, str) or not workspace:
            raise v.invalid("workspace_id", "is required with the admin key")
        fields = v.create_body(body, allow_insecure=ctx.settings.allow_insecure_targets)
        await ctx.resolves_publicly(fields["url"])
        secret = fields.get("secret") or generate_secret()
        fields["secret"] = ctx.rt.secrets.seal(secret)
        _seal_headers(ctx.rt.secrets, fields)
        webhook_id = f"wh_{uuid.uuid4().hex[:20]}"
        async with ctx.room_for_one_more(workspace):
            await ctx.command("create", webhook_id, workspace_id=workspace, fields=fields)
        return 201, shown(ctx.visible(principal, webhook_id), secret)

    @api
    async def get(self, request: Request, principal: Principal) -> tuple[int, Any]:
        limit = v.limit(request.query.get("limit"))
        cursor = request.query.get("cursor") or None
        workspace = request.query.get("workspace_id")
        if not principal.is_admin:
            if workspace not in (None, principal.workspace_id):
                # As the dead letters' list and a create answer it.
                raise v.invalid("workspace_id", "a workspace key sees its own workspace only")
            workspace = principal.workspace_id
        subscriptions = self.ctx.rt.subscriptions
        await subscriptions.sync()
        page, more = subscriptions.index.page(workspace_id=workspace, after=cursor, limit=limit)
        return 200, {"data": [shown(s) for s in page],
                     "next_cursor": page[-1].id if more else None}


class Webhook(Endpoint):
    @api
    async def get(self, request: Request, principal: Principal,
                  webhook_id: str) -> tuple[int, Any]:
        return 200, shown(await self.ctx.current(principal, webhook_id))

    @api
    async def patch(self, request: Request, principal: Principal,
                    webhook_id: str) -> tuple[int, Any]:
        ctx = self.ctx
        sub = await ctx.current(principal, webhook_id)
        fields = v.patch_body(await body_of(request),
                              allow_insecure=ctx.settings.allow_insecure_targets)
        if fields.get("signature_scheme") == "standard-webhooks" != sub.signature_scheme:
            try:
                v.secret(ctx.rt.secrets.open(sub.secret), "standard-webhooks")
            except ApiError:
                raise v.invalid("signature_scheme", "the current secret is not a whsec_ key; "
                                "rotate the secret, then switch") from None
        if "url" in fields:
            await ctx.resolves_publicly(fields["url"])
        _seal_headers(ctx.rt.secrets, fields)
        await ctx.command("update", webhook_id, fields=fields)
        return 200, shown(ctx.visible(principal, webhook_id))

    @api
    async def delete(self, request: Request, principal: Principal,
                     webhook_id: str) -> tuple[int, Any]:
        await self.ctx.current(principal, webhook_id)
        await self.ctx.command("delete", webhook_id)
        return 204, None


class Enable(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        await self.ctx.current(principal, webhook_id)
        v.reject_unknown(await body_of(request, required=False), set())
        await self.ctx.command("enable", webhook_id)
        return 200, shown(self.ctx.visible(principal, webhook_id))


class Disable(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        await self.ctx.current(principal, webhook_id)
        body = await body_of(request, required=False)
        v.reject_unknown(body, {"reason"})
        reason = v.reason(body.get("reason"))
        await self.ctx.command("disable", webhook_id,
                               reason=reason or f"disabled by API key {principal.key_id}")
        return 200, shown(self.ctx.visible(principal, webhook_id))


class RotateSecret(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        await self.ctx.current(principal, webhook_id)
        v.reject_unknown(await body_of(request, required=False), set())
        secret = generate_secret()
        await self.ctx.command("rotate_secret", webhook_id,
                               fields={"secret": self.ctx.rt.secrets.seal(secret)})
        return 200, shown(self.ctx.visible(principal, webhook_id), secret)


class Test(Endpoint):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        """Send a signed webhook.test now, once, even to a disabled webhook; with
        {"event": type}, that type's catalog example instead (whatever the webhook's
        subscription)."""
        ctx = self.ctx
        settings = ctx.settings
        sub = await ctx.current(principal, webhook_id)
        asked = v.event_to_test(await body_of(request, required=False))
        event_id = f"evt_test_{uuid.uuid4().hex[:16]}"
        event_type, data_json = payload_for_test(asked, event_id)
        job = DeliveryJob(
            delivery_id=delivery_id_for(event_id, sub.id), webhook_id=sub.id,
            workspace_id=sub.workspace_id, event_id=event_id, event_type=event_type,
            event_timestamp=iso_from_ms(now_ms()), data_json=data_json,
            attempt=1, created_at=now_ms())
        with ctx.test_turn(sub.id):
            outcome = await attempt(ctx.client(), sub, job, timeout=settings.delivery_timeout,
                                    allow_insecure=settings.allow_insecure_targets,
                                    box=ctx.rt.secrets)
        status = SUCCESS if outcome.ok else FAILED
        metrics.delivered(status, "test").inc()
        record = AttemptRecord.of(job, outcome, status)
        await (await ctx.log_topic.send(key=sub.id.encode(), value=record.encode(), force=True))
        return 200, {"status": status, "response_code": outcome.response_code,
                     "response_time_ms": outcome.response_time_ms, "error": outcome.error}
