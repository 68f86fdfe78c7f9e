"""Control agent: commands from hookstream.control -> the compacted hookstream.subscriptions
topic (Avro Subscription values keyed by webhook id, tombstone on delete).

A command is applied to the webhook's current state as the worker's subscriptions view
holds it (streams.subscriptions.view: every worker keeps every subscription anyway), or as
this agent last wrote it, if the view has not read that write back yet (`Written`). The
new state is sent attached to the command's event, so faust produces it before the
command's offset is committed, on the partition the command came from (where the faust
table this replaced wrote its changelog). That table kept a second copy of every
subscription (about 360 bytes each) and, on every start, read the whole topic through
faust before the view could start reading it: at a million subscriptions a restart took
536 s (`make bench` (d)).

Commands for one webhook share a key, hence a partition, hence are applied strictly in
order by one worker. When a partition moves here, the view first catches up with the
topic's end (so it holds the previous owner's last writes); what this agent wrote is
forgotten when its partitions move away. A command that does not decode, validate or
apply is quarantined with the reason, and the agent goes on (streams.pipeline.agents.each).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from faust.types import EventT

from ..core.schemas import SchemaError
from ..core.timeutil import now_ms
from ..kafka.topics import CONTROL, SUBSCRIPTIONS
from ..pipeline.agents import Agents
from ..runtime.context import Runtime
from ..subscriptions.commands import (
    Command,
    InvalidCommand,
    apply,
    decode_command,
    over_limit,
    redacted_copy,
)
from ..subscriptions.index import SubscriptionIndex
from ..subscriptions.model import Subscription

log = logging.getLogger(__name__)

#: Own writes past which those the view shows already are forgotten (checked then, not on
#: every write). Writes the view has not shown yet are never forgotten.
WRITTEN_PRUNE_AT = 10_000
#: Seconds between tries of the view's catch-up after a partition moved here.
SYNC_TIMEOUT_S = 10.0


@dataclass
class Written:
    """What this agent wrote that its view may not show yet (None: deleted); and whether
    the view must catch up before the next command (a partition was just assigned)."""

    states: dict[str, Subscription | None] = field(default_factory=dict)
    stale: bool = True

    def put(self, webhook_id: str, state: Subscription | None, view: SubscriptionIndex) -> None:
        self.states[webhook_id] = state
        if len(self.states) >= WRITTEN_PRUNE_AT:
            self.states = {w: s for w, s in self.states.items() if view.get(w) != s}

    def unseen_change_in(self, workspace_id: str, view: SubscriptionIndex) -> int:
        """How many webhooks the workspace has beyond what the view counts: those this
        agent created or deleted that the view does not show yet."""
        change = 0
        for webhook_id, state in self.states.items():
            shown = view.get(webhook_id)
            if state is not None and shown is None and state.workspace_id == workspace_id:
                change += 1
            elif state is None and shown is not None and shown.workspace_id == workspace_id:
                change -= 1
        return change

    def get(self, webhook_id: str, view: SubscriptionIndex) -> Subscription | None:
        """The webhook's state: this agent's last write until the view shows it."""
        if webhook_id not in self.states:
            return view.get(webhook_id)
        state = self.states[webhook_id]
        if view.get(webhook_id) == state:
            del self.states[webhook_id]  # the view has it: it is the one source again
        return state


def install(rt: Runtime, agents: Agents) -> None:
    """The control agent, on the runtime's app."""
    settings = rt.settings
    view = rt.subscriptions
    topic = rt.topic(SUBSCRIPTIONS)
    written = Written()

    async def on_assigned(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        written.stale = True

    async def on_revoked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        # Another worker may write these webhooks next: only the view knows them then.
        written.states.clear()
        written.stale = True

    rt.app.on_partitions_assigned.connect(on_assigned)
    rt.app.on_partitions_revoked.connect(on_revoked)

    async def current_state(webhook_id: str) -> Subscription | None:
        if written.stale:
            await view.ready.wait()
            while not await view.sync(SYNC_TIMEOUT_S):
                log.warning("the subscriptions view has not caught up in %.0fs; waiting",
                            SYNC_TIMEOUT_S)
            written.stale = False
        return written.get(webhook_id, view.index)

    async def store(event: EventT[Any], webhook_id: str, state: Subscription | None) -> None:
        # Attached to the command's event: produced before its offset is committed.
        await topic.send(key=webhook_id.encode(),
                         value=None if state is None else state.encode(),
                         partition=event.message.partition)
        written.put(webhook_id, state, view.index)

    async def apply_command(event: EventT[Any], command: Command) -> None:
        try:
            key = event.key.decode() if isinstance(event.key, bytes) else None
        except UnicodeDecodeError:
            raise InvalidCommand("message key is not UTF-8") from None
        if key != command.webhook_id:
            # Keyed otherwise, two commands for one webhook could race on two partitions.
            raise InvalidCommand(
                f"message key {key!r} must be the command's webhook_id {command.webhook_id!r}")
        current = await current_state(command.webhook_id)
        if command.op == "create" and current is None and command.workspace_id is not None:
            # Every worker's view counts the whole workspace, and this agent adds what it
            # wrote that the view does not show yet (back-to-back creates passed together
            # before). Creates on partitions of other workers at once may still pass
            # together: there the bound is approximate.
            index = rt.subscriptions.index
            why = over_limit(command.workspace_id,
                             index.count_in_workspace(command.workspace_id)
                             + written.unseen_change_in(command.workspace_id, index),
                             settings.max_webhooks_per_workspace)
            if why is not None:
                raise InvalidCommand(why)
        updated = apply(current, command, now_ms(),
                        allow_insecure=settings.allow_insecure_targets,
                        rotation_grace_ms=int(settings.rotation_grace * 1000))
        if updated is None:
            await store(event, command.webhook_id, None)
            log.info("webhook %s deleted", command.webhook_id)
            return
        # A producer may send a plaintext secret or header value; only sealed ones are
        # stored.
        box = rt.secrets
        updated = replace(updated, secret=box.seal_if_plain(updated.secret),
                          headers=tuple((name, box.seal_if_plain(value))
                                        for name, value in updated.headers))
        await store(event, command.webhook_id, updated)
        log.info("webhook %s: %s applied (active=%s)", updated.id, command.op, updated.active)

    async def control(stream: Any) -> None:
        await agents.each(stream, decode_command, "command", apply_command, stage="control",
                          rejects=(InvalidCommand, SchemaError), redact=redacted_copy)

    rt.app.agent(rt.topic(CONTROL), name="control")(control)
