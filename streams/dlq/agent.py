"""Dead-letter agent: a delivery that exhausted its retries, or whose receiver answered
410 Gone, disables its webhook.

For each dead letter with reason attempts_exhausted or gone (models.DISABLING_REASONS) it
emits a `disable` control command (so the subscription goes inactive and later jobs are
dead-lettered, not sent) and a `webhook.disabled` operational event for alerting. The
reason both carry, which becomes the webhook's `disabled_reason`, says which: "auto:
delivery … dead-lettered after N attempts", or `gone`, the letter's own reason, the word
Stripe's and GitHub's users look for. Letters of an already disabled or deleted webhook
change nothing. Both sends are acknowledged before the letter's offset is committed; a
repeat after a crash disables an inactive webhook again, which is harmless.
A letter that does not decode, or whose handling keeps failing, is quarantined and the
agent goes on (streams.pipeline.agents).
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from ..core.schemas import OPERATIONAL_EVENT, registry
from ..core.timeutil import iso_from_ms, now_ms
from ..delivery.models import DISABLING_REASONS, GONE, DeadLetter
from ..kafka.topics import CONTROL, DLQ, OPERATIONS
from ..pipeline.agents import Agents
from ..runtime.context import Runtime
from ..subscriptions.commands import Command

log = logging.getLogger(__name__)


def install(rt: Runtime, agents: Agents) -> None:
    """The dead-letter agent, on the runtime's app."""
    control_out = rt.topic(CONTROL)
    operations = rt.topic(OPERATIONS)

    async def on_dead_letter(_event: EventT[Any], letter: DeadLetter) -> None:
        if letter.reason not in DISABLING_REASONS:
            return
        job = letter.job
        reason = GONE if letter.reason == GONE else (
            f"auto: delivery {job.delivery_id} dead-lettered after {len(job.outcomes)} "
            "attempts")
        now = now_ms()
        command = Command(op="disable", webhook_id=job.webhook_id,
                          workspace_id=job.workspace_id, reason=reason,
                          requested_at=iso_from_ms(now))
        await control_out.send(key=job.webhook_id.encode(), value=command.encode())
        await operations.send(key=job.webhook_id.encode(), value=registry().encode(
            OPERATIONAL_EVENT, {
                "type": "webhook.disabled", "webhook_id": job.webhook_id,
                "workspace_id": job.workspace_id, "reason": reason,
                "delivery_id": job.delivery_id, "at": now}))
        log.warning("webhook %s disabled: %s (delivery %s, %s)", job.webhook_id, reason,
                    job.delivery_id, letter.error)

    async def dead_letters(stream: Any) -> None:
        await agents.each(stream, DeadLetter.decode, "dead letter", on_dead_letter,
                          stage="deadletters")

    rt.app.agent(rt.topic(DLQ), name="dead_letters")(dead_letters)
