"""What hookstream writes when a webhook fails: the records, not the sending. Pure.

Two writers use it, each for what only it sees: the dead-letter agent (streams.dlq.agent:
every dead letter, once) and the delivery stage (streams.delivery.stage: every attempt, for
the failure count of streams.delivery.failing). Each gets a list of `Produce` to send:

    disable       `disable` control command (key: webhook id) -> the webhook goes inactive
                  OperationalEvent `webhook.disabled` on hookstream.operations (operators)
                  event `webhook.disabled` on domain.webhook (key: workspace id)
    failing       event `webhook.failing` on domain.webhook
    dead letter   event `delivery.dead_lettered` on domain.delivery

The events (streams.core.operational) are made only where the deployment has their
family's topic. No loops: a dead letter of an operational event makes no
`delivery.dead_lettered` (or one failing endpoint subscribed to another's news would make
news of its own failure to deliver it, for ever); the fan-out never sends an operational
event to the webhook it is about; and the stage does not count operational events' failed
attempts towards `webhook.failing`.
"""

from __future__ import annotations

from ..core import catalog, operational
from ..core.schemas import OPERATIONAL_EVENT, registry
from ..core.timeutil import iso_from_ms
from ..kafka.topics import CONTROL, OPERATIONS, domain_topic
from ..pipeline.records import Produce
from ..subscriptions.commands import Command
from ..subscriptions.model import Subscription
from .failing import LIMIT, Crossing
from .models import DISABLING_REASONS, DeadLetter, DeliveryJob, Outcome


def _event(record: dict[str, object], families: tuple[str, ...]) -> list[Produce]:
    event_type = str(record["event"])
    if not operational.publishes(families, event_type):
        return []
    return [Produce(domain_topic(catalog.family_of(event_type)), str(record["workspace_id"]),
                    operational.encode(record))]


def disable(sub: Subscription, reason: str, *, families: tuple[str, ...], now: int,
            last: Outcome | None, delivery_id: str | None = None,
            failures: int | None = None, limit: int | None = None) -> list[Produce]:
    """Disable `sub` (as the view holds it: its version names the event) for `reason`, and
    say so; `last` is the failed attempt that decided it."""
    command = Command(op="disable", webhook_id=sub.id, workspace_id=sub.workspace_id,
                      reason=reason, requested_at=iso_from_ms(now))
    notice = registry().encode(OPERATIONAL_EVENT, {
        "type": catalog.WEBHOOK_DISABLED, "webhook_id": sub.id,
        "workspace_id": sub.workspace_id, "reason": reason, "delivery_id": delivery_id,
        "at": now})
    return [
        Produce(CONTROL, sub.id, command.encode()),
        Produce(OPERATIONS, sub.id, notice),
        *_event(operational.webhook_disabled(
            webhook_id=sub.id, workspace_id=sub.workspace_id, url=sub.url,
            version=sub.updated_at, reason=reason,
            last_response_code=last.response_code if last else None,
            last_error=last.error if last else None, at_ms=now, failures=failures,
            limit=limit), families),
    ]


def limit_reason(limit: int) -> str:
    """The `disabled_reason` of a webhook disabled by the failure limit."""
    return f"auto: {limit} consecutive failed attempts (HOOKSTREAM_FAILURE_LIMIT)"


def crossed(crossing: Crossing, *, sub: Subscription, job: DeliveryJob, outcome: Outcome,
            limit: int, families: tuple[str, ...], now: int) -> list[Produce]:
    """What a count the failure counter reached makes: a `webhook.failing`, or the disable."""
    if crossing.kind == LIMIT:
        return disable(sub, limit_reason(limit), families=families, now=now, last=outcome,
                       delivery_id=job.delivery_id, failures=crossing.failures, limit=limit)
    instance = f"{job.delivery_id}/{job.created_at}/{job.attempt}"
    return _event(operational.webhook_failing(
        webhook_id=sub.id, workspace_id=sub.workspace_id, url=sub.url,
        failures=crossing.failures, limit=limit, last_response_code=outcome.response_code,
        last_error=outcome.error, crossing=instance, at_ms=now), families)


def dead_lettered(letter: DeadLetter, *, families: tuple[str, ...]) -> list[Produce]:
    """The `delivery.dead_lettered` of a letter that ended a delivery by failing (attempts
    exhausted, or gone); nothing for one of a disabled or deleted webhook (its
    `webhook.disabled` said it), nor for one of an operational event (no loops)."""
    job = letter.job
    if letter.reason not in DISABLING_REASONS or catalog.is_operational(job.event_type):
        return []
    last = job.outcomes[-1] if job.outcomes else None
    return _event(operational.delivery_dead_lettered(
        delivery_id=job.delivery_id, created_at=job.created_at, webhook_id=job.webhook_id,
        workspace_id=job.workspace_id, event_id_=job.event_id, event_type=job.event_type,
        attempts=len(job.outcomes), reason=letter.reason,
        last_response_code=last.response_code if last else None,
        last_error=letter.error if letter.error is not None else (last.error if last else None),
        at_ms=letter.dead_at), families)
