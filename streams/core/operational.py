"""Operational events: what hookstream publishes about a workspace's own webhooks. Pure.

    webhook.failing         a webhook's consecutive failed attempts reached 50%, then 90%,
                            of HOOKSTREAM_FAILURE_LIMIT (streams.delivery.failing)
    webhook.disabled        hookstream disabled it: a dead letter (attempts exhausted, or
                            410 Gone: streams.dlq.agent) or the failure limit (the delivery
                            stage); not an operator's disable, which its caller knows of
    delivery.dead_lettered  one of its deliveries will not be retried (streams.dlq.agent)

They are domain events like any other: an Avro `Event` on `domain.webhook` or
`domain.delivery`, keyed by workspace id, so the fan-out sends them to the workspace's
webhooks that subscribe to them (signed, retried, filtered, rate-limited alike), except
the webhook they are about (`data.webhook_id`). A deployment whose
HOOKSTREAM_EVENT_FAMILIES leaves a family out has no topic for it: `publishes` says so,
and its events are not made.

Every id is derived from what the event is about, so at-least-once repeats (a crash
before an offset was committed) carry the same event id, hence the same delivery ids
downstream: one per dead letter's job instance; one per webhook and subscription version
for `webhook.disabled` (whoever disables a given version of a webhook, the dead-letter
agent or the delivery stage, names it alike); one per crossing attempt for
`webhook.failing`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import catalog
from .schemas import EVENT, FAMILY_DATA, registry
from .timeutil import iso_from_ms


def event_id(event_type: str, *parts: object) -> str:
    """A stable event id from what the event is about."""
    text = "\x00".join([event_type, *(str(p) for p in parts)])
    return f"evt_{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def publishes(families: tuple[str, ...], event_type: str) -> bool:
    """Whether a deployment reading `families` has the topic an event of this type goes to."""
    return catalog.family_of(event_type) in families


def encode(record: dict[str, Any]) -> bytes:
    """An operational event as producers write domain events: Avro single-object encoding."""
    family = catalog.family_of(record["event"])
    return registry().encode(EVENT, {**record, "data": (FAMILY_DATA[family], record["data"])})


def _event(event_type: str, ident: str, at_ms: int, workspace_id: str,
           data: dict[str, Any]) -> dict[str, Any]:
    return {"id": ident, "event": event_type, "timestamp": iso_from_ms(at_ms),
            "workspace_id": workspace_id,
            "data": {k: v for k, v in data.items() if v is not None}}


def webhook_failing(*, webhook_id: str, workspace_id: str, url: str, failures: int,
                    limit: int, last_response_code: int | None, last_error: str | None,
                    crossing: str, at_ms: int) -> dict[str, Any]:
    """`crossing` names the attempt whose failure reached the threshold (its job instance)."""
    return _event(catalog.WEBHOOK_FAILING,
                  event_id(catalog.WEBHOOK_FAILING, webhook_id, failures, crossing),
                  at_ms, workspace_id,
                  {"webhook_id": webhook_id, "url": url, "consecutive_failures": failures,
                   "failure_limit": limit, "last_response_code": last_response_code,
                   "last_error": last_error})


def webhook_disabled(*, webhook_id: str, workspace_id: str, url: str, version: int,
                     reason: str, last_response_code: int | None, last_error: str | None,
                     at_ms: int, failures: int | None = None,
                     limit: int | None = None) -> dict[str, Any]:
    """`version`: the `updated_at` of the subscription being disabled (one event per
    version, whoever disables it)."""
    return _event(catalog.WEBHOOK_DISABLED,
                  event_id(catalog.WEBHOOK_DISABLED, webhook_id, version), at_ms,
                  workspace_id,
                  {"webhook_id": webhook_id, "url": url, "reason": reason,
                   "consecutive_failures": failures, "failure_limit": limit,
                   "last_response_code": last_response_code, "last_error": last_error})


def delivery_dead_lettered(*, delivery_id: str, created_at: int, webhook_id: str,
                           workspace_id: str, event_id_: str, event_type: str,
                           attempts: int, reason: str, last_response_code: int | None,
                           last_error: str | None, at_ms: int) -> dict[str, Any]:
    """One per dead-lettered job instance: (`delivery_id`, `created_at`), so a replay that
    dies again is news again, and a repeat of the same letter is not."""
    return _event(catalog.DELIVERY_DEAD_LETTERED,
                  event_id(catalog.DELIVERY_DEAD_LETTERED, delivery_id, created_at), at_ms,
                  workspace_id,
                  {"delivery_id": delivery_id, "webhook_id": webhook_id,
                   "event_id": event_id_, "event_type": event_type, "attempts": attempts,
                   "reason": reason, "last_response_code": last_response_code,
                   "last_error": last_error})


def subject(event_type: str, data: dict[str, Any]) -> str | None:
    """The webhook an operational event is about (which never receives it); None for a
    domain event."""
    if not catalog.is_operational(event_type):
        return None
    webhook_id = data.get("webhook_id")
    return webhook_id if isinstance(webhook_id, str) else None
