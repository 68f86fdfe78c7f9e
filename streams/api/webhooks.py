"""/v1/webhooks: the documentation's API over control commands and the local tables.

Writes become control commands (secrets sealed first) and the response waits, bounded, until
this worker's copy of the subscriptions table applied them, so a read that follows sees the
write; reads first catch up with the table's end (CompactedView.sync), so that holds on any
worker. Another workspace's webhook answers 404, exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.web import HTTPRequestEntityTooLarge
from faust.web import Request, Response, View

from ..core import catalog
from ..core.apikeys import Principal
from ..core.payload import dumps
from ..core.timeutil import iso_from_ms, now_ms, parse_iso
from ..core.urls import parse_target
from ..delivery.client import NOT_PUBLIC, DeliveryClient, resolves_publicly
from ..delivery.models import FAILED, SUCCESS, AttemptRecord, DeliveryJob, delivery_id_for
from ..delivery.sender import attempt
from ..dlq.index import decode_cursor, encode_cursor
from ..dlq.replay import fetch_letters, replay
from ..history import table as history
from ..kafka.topics import CONTROL, DELIVERY_LOG, IDEMPOTENCY
from ..runtime import metrics
from ..runtime.app import app, raw_topic, settings
from ..runtime.views import dead_letters, idempotency, subscriptions
from ..subscriptions.commands import Command, Subscription, generate_secret, over_limit
from . import openapi
from . import validation as v
from .auth import TooManyFailures, principal_of
from .forwarding import answered_by_owner, too_many, unauthorized
from .validation import ApiError

APPLY_TIMEOUT_S = 10.0
box = settings.secret_box()
_idempotency_box = box.derive("hookstream idempotency v1")
control_topic = raw_topic(CONTROL)
log_topic = raw_topic(DELIVERY_LOG)
idempotency_topic = raw_topic(IDEMPOTENCY)
_client: DeliveryClient | None = None

Handler = Callable[..., Awaitable[tuple[int, Any]]]
ViewMethod = Callable[..., Awaitable[Response]]


def api(handler: Handler) -> ViewMethod:
    """Authenticate, turn ApiError into its JSON answer, honour Idempotency-Key on POST."""

    @functools.wraps(handler)
    async def wrapped(self: View, request: Request, **kwargs: Any) -> Response:
        try:
            principal = _principal(request)
            key = v.idempotency_key(request.headers.get("Idempotency-Key")
                                    if request.method == "POST" else None)
            if key:
                # The first answer was stored before it was returned: catching up with the
                # topic makes a retry on any worker find it.
                await idempotency.sync()
                stored = idempotency.get(f"{principal.key_id}:{key}")
                if stored is not None:
                    return self.json(_opened(stored), status=stored["status"])
            status: int
            body: Any
            status, body = await handler(self, request, principal, **kwargs)
            # Only what was done is remembered (as Stripe does): a refused request may be
            # sent again, corrected, with the same key.
            if key and 200 <= status < 300:
                await _remember(f"{principal.key_id}:{key}", status, body)
        except ApiError as exc:
            return self.json(exc.body(), status=exc.status)
        except TooManyFailures as exc:
            return too_many(self, exc)
        if status == 204:
            return self.bytes(b"", status=204)
        return self.json(body, status=status)

    return wrapped


def _principal(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise unauthorized()
    return principal


async def _remember(key: str, status: int, body: Any) -> None:
    """Kept sealed: a create or rotate answer holds the webhook's plaintext secret."""
    sealed = _idempotency_box.seal(json.dumps(body))
    value = json.dumps({"status": status, "sealed": sealed, "at": now_ms()}).encode()
    await (await idempotency_topic.send(key=key.encode(), value=value, force=True))


def _opened(stored: dict[str, Any]) -> Any:
    if "sealed" in stored:
        return json.loads(_idempotency_box.open(stored["sealed"]))
    return stored["body"]  # written before answers were sealed (expires within a day)


async def _body(request: Request, required: bool = True) -> dict[str, Any]:
    try:
        raw = await request.read()
    except HTTPRequestEntityTooLarge:
        raise v.invalid("body", f"larger than {v.MAX_BODY} bytes") from None
    return v.parse_json(raw, required=required)


def _visible(principal: Principal, webhook_id: str) -> Subscription:
    sub = subscriptions.index.get(webhook_id)
    if sub is None or not principal.may_see(sub.workspace_id):
        raise ApiError(404, "not_found", f"no webhook {webhook_id}")
    return sub


async def _current(principal: Principal, webhook_id: str) -> Subscription:
    """The webhook as of now (caught up with the table), if the caller may see it."""
    await subscriptions.sync()
    return _visible(principal, webhook_id)


def _room_for_one_more(workspace: str) -> None:
    """HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE: a tenant is bounded by settings. (Creates on
    two workers at once can both pass; the control agent holds the line as well.)"""
    why = over_limit(workspace, subscriptions.index.count_in_workspace(workspace),
                     settings.max_webhooks_per_workspace)
    if why is not None:
        raise ApiError(409, "limit_reached", why, "workspace_id")


async def _resolves_publicly(url: str) -> None:
    """Secure mode: every address the host resolves to must be public (checked again at
    every connection). No answer and a private answer read the same, so tenants cannot map
    internal DNS through this API."""
    if settings.allow_insecure_targets:
        return
    target = parse_target(url)
    if target.address is None and not await resolves_publicly(target.host):
        raise v.invalid("url", f"{target.host} {NOT_PUBLIC}")


async def _command(op: str, sub_id: str, *, principal: Principal, workspace_id: str | None = None,
                   fields: dict[str, Any] | None = None, reason: str | None = None) -> None:
    """Send a command and wait until this worker's table applied it."""
    command_id = f"cmd_{uuid.uuid4().hex}"
    command = Command(op=op, webhook_id=sub_id, workspace_id=workspace_id, webhook=fields or {},
                      reason=reason, requested_at=iso_from_ms(now_ms()), command_id=command_id)
    # force: never attach to a stream event that happens to be in context; publish now.
    await (await control_topic.send(key=sub_id.encode(), value=command.encode(), force=True))

    def applied() -> bool:
        current = subscriptions.index.get(sub_id)
        if op == "delete":
            return current is None
        return current is not None and current.last_command == command_id

    if not await subscriptions.wait_for(applied, APPLY_TIMEOUT_S):
        raise ApiError(504, "not_applied", f"the {op} was sent but not applied within "
                       f"{APPLY_TIMEOUT_S:g}s; it may still take effect")


def _shown(sub: Subscription, secret: str | None = None) -> dict[str, Any]:
    shown = sub.public()
    shown["created_at"] = iso_from_ms(sub.created_at)
    shown["updated_at"] = iso_from_ms(sub.updated_at)
    shown["events"] = list(sub.events)
    if secret is not None:
        shown["secret"] = secret  # only on create and rotate: store it now
    return shown


@app.page("/v1/webhooks")
class Webhooks(View):
    @api
    async def post(self, request: Request, principal: Principal) -> tuple[int, Any]:
        body = await _body(request)
        workspace = body.get("workspace_id") if principal.is_admin else principal.workspace_id
        if not principal.is_admin and body.get("workspace_id") not in (None, workspace):
            raise v.invalid("workspace_id", "a workspace key acts for its own workspace only")
        if not isinstance(workspace, str) or not workspace:
            raise v.invalid("workspace_id", "is required with the admin key")
        fields = v.create_body(body, allow_insecure=settings.allow_insecure_targets)
        await subscriptions.sync()
        _room_for_one_more(workspace)
        await _resolves_publicly(fields["url"])
        secret = fields.get("secret") or generate_secret()
        fields["secret"] = box.seal(secret)
        webhook_id = f"wh_{uuid.uuid4().hex[:20]}"
        await _command("create", webhook_id, principal=principal, workspace_id=workspace,
                       fields=fields)
        return 201, _shown(_visible(principal, webhook_id), secret)

    @api
    async def get(self, request: Request, principal: Principal) -> tuple[int, Any]:
        limit = v.limit(request.query.get("limit"))
        cursor = request.query.get("cursor") or None
        workspace = request.query.get("workspace_id")
        if not principal.is_admin:
            if workspace not in (None, principal.workspace_id):
                return 200, {"data": [], "next_cursor": None}
            workspace = principal.workspace_id
        await subscriptions.sync()
        page, more = subscriptions.index.page(workspace_id=workspace, after=cursor, limit=limit)
        return 200, {"data": [_shown(s) for s in page],
                     "next_cursor": page[-1].id if more else None}


@app.page("/v1/webhooks/{webhook_id}")
class Webhook(View):
    @api
    async def get(self, request: Request, principal: Principal,
                  webhook_id: str) -> tuple[int, Any]:
        return 200, _shown(await _current(principal, webhook_id))

    @api
    async def patch(self, request: Request, principal: Principal,
                    webhook_id: str) -> tuple[int, Any]:
        sub = await _current(principal, webhook_id)
        fields = v.patch_body(await _body(request), allow_insecure=settings.allow_insecure_targets)
        if fields.get("signature_scheme") == "standard-webhooks" != sub.signature_scheme:
            try:
                v.secret(box.open(sub.secret), "standard-webhooks")
            except ApiError:
                raise v.invalid("signature_scheme", "the current secret is not a whsec_ key; "
                                "rotate the secret, then switch") from None
        if "url" in fields:
            await _resolves_publicly(fields["url"])
        await _command("update", webhook_id, principal=principal, fields=fields)
        return 200, _shown(_visible(principal, webhook_id))

    @api
    async def delete(self, request: Request, principal: Principal,
                     webhook_id: str) -> tuple[int, Any]:
        await _current(principal, webhook_id)
        await _command("delete", webhook_id, principal=principal)
        return 204, None


def _action(op: str) -> type[View]:
    class Action(View):
        @api
        async def post(self, request: Request, principal: Principal,
                       webhook_id: str) -> tuple[int, Any]:
            await _current(principal, webhook_id)
            body = await _body(request, required=False)
            if op == "rotate_secret":
                v._unknown(body, set())
                secret = generate_secret()
                await _command(op, webhook_id, principal=principal,
                               fields={"secret": box.seal(secret)})
                return 200, _shown(_visible(principal, webhook_id), secret)
            v._unknown(body, {"reason"})
            reason = body.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise v.invalid("reason", "must be a string")
            await _command(op, webhook_id, principal=principal,
                           reason=reason or (f"disabled by API key {principal.key_id}"
                                             if op == "disable" else None))
            return 200, _shown(_visible(principal, webhook_id))

    Action.__name__ = f"Webhook_{op}"
    return Action


for _op, _path in (("enable", "enable"), ("disable", "disable"),
                   ("rotate_secret", "rotate-secret")):
    app.page(f"/v1/webhooks/{{webhook_id}}/{_path}")(_action(_op))


@app.page("/v1/webhooks/{webhook_id}/test")
class WebhookTest(View):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        """Send a signed webhook.test now, once, even to a disabled webhook."""
        global _client
        sub = await _current(principal, webhook_id)
        v._unknown(await _body(request, required=False), set())
        event_id = f"evt_test_{uuid.uuid4().hex[:16]}"
        job = DeliveryJob(
            delivery_id=delivery_id_for(event_id, sub.id), webhook_id=sub.id,
            workspace_id=sub.workspace_id, event_id=event_id, event_type=catalog.TEST_EVENT,
            event_timestamp=iso_from_ms(now_ms()),
            data_json=dumps({"id": event_id, "message": "A test event from hookstream"}),
            attempt=1, created_at=now_ms())
        if _client is None:
            _client = DeliveryClient(settings)
        outcome = await attempt(_client, sub, job, timeout=settings.delivery_timeout,
                                allow_insecure=settings.allow_insecure_targets, box=box)
        status = SUCCESS if outcome.ok else FAILED
        metrics.DELIVERIES.labels(outcome=status, stage="test").inc()
        record = AttemptRecord.of(job, outcome, status)
        await (await log_topic.send(key=sub.id.encode(), value=record.encode(), force=True))
        return 200, {"status": status, "response_code": outcome.response_code,
                     "response_time_ms": outcome.response_time_ms, "error": outcome.error}


@app.page("/v1/webhooks/{webhook_id}/replay")
class WebhookReplay(View):
    @api
    async def post(self, request: Request, principal: Principal,
                   webhook_id: str) -> tuple[int, Any]:
        await _current(principal, webhook_id)
        body = await _body(request, required=False)
        v._unknown(body, {"since", "until"})
        bounds = {}
        for name in ("since", "until"):
            raw = body.get(name)
            if raw is None:
                continue
            try:
                bounds[name] = int(parse_iso(str(raw)).timestamp() * 1000)
            except ValueError:
                raise v.invalid(name, "must be an ISO 8601 time with a zone") from None
        await dead_letters.sync()
        index = dead_letters.index
        chosen = [d for d in index.of_webhook(webhook_id)
                  if bounds.get("since", d.dead_at) <= d.dead_at <= bounds.get("until", d.dead_at)]
        pending = [d for d in chosen if not index.replayed(d)]
        letters = await asyncio.to_thread(fetch_letters, settings,
                                          [(d.partition, d.offset) for d in pending])
        count = await asyncio.to_thread(replay, settings, letters)
        return 200, {"replayed": count, "already_replayed": len(chosen) - len(pending)}


@app.page("/v1/webhooks/{webhook_id}/deliveries")
@answered_by_owner(history.history, "webhook_id")
async def deliveries(web: View, request: Request, webhook_id: str,
                     principal: Principal) -> Response:
    """Recent attempts, newest first: answered by the worker holding this webhook's history."""
    try:
        await _current(principal, webhook_id)
        limit = v.limit(request.query.get("limit"))
        status = request.query.get("status")
        if status is not None and status not in ("success", "retrying", "dead", "disabled",
                                                 "failed"):
            raise v.invalid("status", "must be success, retrying, dead, disabled or failed")
        raw_cursor = request.query.get("cursor")
        try:
            cursor = int(raw_cursor) if raw_cursor else None
        except ValueError:
            raise v.invalid("cursor", "is not a cursor from this API") from None
    except ApiError as exc:
        return web.json(exc.body(), status=exc.status)
    page = history.page(webhook_id, status=status, limit=limit, cursor=cursor)
    return web.json({
        "data": [{
            "id": r.delivery_id, "event": r.event_type, "event_id": r.event_id,
            "timestamp": iso_from_ms(r.attempted_at), "status": r.status,
            "response_code": r.response_code, "response_time_ms": r.response_time_ms,
            "attempt": r.attempt, "error": r.error,
            "next_attempt_at": iso_from_ms(r.next_attempt_at) if r.next_attempt_at else None,
        } for r in page.records],
        "next_cursor": str(page.next_cursor) if page.next_cursor else None,
    })


@app.page("/v1/dead-letters")
class DeadLetters(View):
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
            await _current(principal, webhook_id)
        await dead_letters.sync()
        index = dead_letters.index
        letters, after = index.page(workspace_id=workspace, webhook_id=webhook_id,
                                    reason=reason, before=before, limit=limit)
        return 200, {"data": [{
            "delivery_id": d.delivery_id, "webhook_id": d.webhook_id,
            "workspace_id": d.workspace_id, "event": d.event_type, "event_id": d.event_id,
            "reason": d.reason, "error": d.error, "attempts": d.attempts,
            "dead_at": iso_from_ms(d.dead_at), "replayed": index.replayed(d),
        } for d in letters], "next_cursor": encode_cursor(after) if after else None}


@app.page("/v1/event-types")
class EventTypes(View):
    async def get(self, request: Request) -> Response:
        return self.json({"data": [{"name": t, "family": f} for f, ts in
                                   catalog.EVENT_TYPES.items() for t in ts]})


@app.page("/openapi.json")
class OpenApi(View):
    async def get(self, request: Request) -> Response:
        return self.json(openapi.document())
