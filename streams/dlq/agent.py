"""Dead-letter agent: a delivery that exhausted its retries, or whose receiver answered
410 Gone, disables its webhook, and every such dead letter is news for the workspace.

For each dead letter with reason attempts_exhausted or gone (models.DISABLING_REASONS) it
emits a `delivery.dead_lettered` event, then (streams.delivery.operations) a `disable`
control command (so the subscription goes inactive and later jobs are dead-lettered, not
sent), a `webhook.disabled` operational event on hookstream.operations for alerting, and a
`webhook.disabled` event for the workspace's webhooks that subscribe to it. The reason they
carry, which becomes the webhook's `disabled_reason`, says which: "auto: delivery …
dead-lettered after N attempts", or `gone`, the letter's own reason, the word Stripe's and
GitHub's users look for. Letters of an already disabled or deleted webhook (as this
worker's subscriptions view holds it) change nothing but send the command again, which is
harmless: the disable was said once, when the webhook was still active. This agent is the
one place that sees every dead letter once (the delivery stage writes them, an operator's
replay makes new ones), so it makes `delivery.dead_lettered`; not for an operational
event's letter, so that two failing endpoints subscribed to each other's news make none.
All sends are acknowledged before the letter's offset is committed; a repeat after a crash
makes the same records, with the same event ids (streams.core.operational).
A letter that does not decode, or whose handling keeps failing, is quarantined and the
agent goes on (streams.pipeline.agents).
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from ..core.timeutil import iso_from_ms, now_ms
from ..delivery import operations
from ..delivery.models import DISABLING_REASONS, GONE, DeadLetter
from ..kafka.topics import CONTROL, DLQ
from ..pipeline.agents import Agents
from ..pipeline.records import Produce
from ..runtime.context import Runtime
from ..subscriptions.commands import Command

log = logging.getLogger(__name__)


def disable_reason(letter: DeadLetter) -> str:
    """The `disabled_reason` a disabling dead letter leaves on its webhook."""
    job = letter.job
    return GONE if letter.reason == GONE else (
        f"auto: delivery {job.delivery_id} dead-lettered after {len(job.outcomes)} attempts")


def install(rt: Runtime, agents: Agents) -> None:
    """The dead-letter agent, on the runtime's app."""
    families = rt.settings.families

    async def send(records: list[Produce]) -> None:
        for record in records:
            await rt.topic(record.topic).send(key=record.key.encode(), value=record.value)

    async def on_dead_letter(_event: EventT[Any], letter: DeadLetter) -> None:
        if letter.reason not in DISABLING_REASONS:
            return
        await rt.subscriptions.ready.wait()
        job = letter.job
        reason = disable_reason(letter)
        now = now_ms()
        await send(operations.dead_lettered(letter, families=families))
        sub = rt.subscriptions.index.get(job.webhook_id)
        if sub is not None and sub.active:
            await send(operations.disable(
                sub, reason, families=families, now=now,
                last=job.outcomes[-1] if job.outcomes else None,
                delivery_id=job.delivery_id))
        else:
            command = Command(op="disable", webhook_id=job.webhook_id,
                              workspace_id=job.workspace_id, reason=reason,
                              requested_at=iso_from_ms(now))
            await send([Produce(CONTROL, job.webhook_id, command.encode())])
        log.warning("webhook %s disabled: %s (delivery %s, %s)", job.webhook_id, reason,
                    job.delivery_id, letter.error)

    async def dead_letters(stream: Any) -> None:
        await agents.each(stream, DeadLetter.decode, "dead letter", on_dead_letter,
                          stage="deadletters")

    rt.app.agent(rt.topic(DLQ), name="dead_letters")(dead_letters)
