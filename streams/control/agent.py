"""Control agent: commands from hookstream.control -> the subscriptions table.

The table's changelog IS the compacted hookstream.subscriptions topic (Avro Subscription
values keyed by webhook id, tombstone on delete), so faust writes each change there and
recovers the table from it on start. Commands for one webhook share a key, hence a
partition, hence are applied strictly in order. A command that does not decode, validate
or apply is quarantined with the reason, and the agent goes on (streams.pipeline.agents.each).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from faust.types import EventT

from ..core.schemas import SchemaError
from ..core.timeutil import now_ms
from ..kafka.app import raw_table
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
from ..subscriptions.model import Subscription

log = logging.getLogger(__name__)


def install(rt: Runtime, agents: Agents) -> None:
    """The control agent and its table, on the runtime's app."""
    settings = rt.settings
    table = raw_table(rt.app, settings, "subscriptions", changelog=SUBSCRIPTIONS)

    async def apply_command(event: EventT[Any], command: Command) -> None:
        try:
            key = event.key.decode() if isinstance(event.key, bytes) else None
        except UnicodeDecodeError:
            raise InvalidCommand("message key is not UTF-8") from None
        if key != command.webhook_id:
            # Keyed otherwise, two commands for one webhook could race on two partitions.
            raise InvalidCommand(
                f"message key {key!r} must be the command's webhook_id {command.webhook_id!r}")
        table_key = command.webhook_id.encode()
        stored = table.get(table_key)
        current = Subscription.decode(stored) if stored is not None else None
        if command.op == "create" and current is None and command.workspace_id is not None:
            # Every worker's view counts the whole workspace; creates on several partitions
            # at once may pass together before it shows them, so this bound is approximate.
            why = over_limit(command.workspace_id,
                             rt.subscriptions.index.count_in_workspace(command.workspace_id),
                             settings.max_webhooks_per_workspace)
            if why is not None:
                raise InvalidCommand(why)
        updated = apply(current, command, now_ms(),
                        allow_insecure=settings.allow_insecure_targets,
                        rotation_grace_ms=int(settings.rotation_grace * 1000))
        if updated is None:
            table.pop(table_key, None)
            log.info("webhook %s deleted", command.webhook_id)
            return
        # A producer may send a plaintext secret or header value; only sealed ones are
        # stored.
        box = rt.secrets
        updated = replace(updated, secret=box.seal_if_plain(updated.secret),
                          headers=tuple((name, box.seal_if_plain(value))
                                        for name, value in updated.headers))
        table[table_key] = updated.encode()
        log.info("webhook %s: %s applied (active=%s)", updated.id, command.op, updated.active)

    async def control(stream: Any) -> None:
        await agents.each(stream, decode_command, "command", apply_command, stage="control",
                          rejects=(InvalidCommand, SchemaError), redact=redacted_copy)

    rt.app.agent(rt.topic(CONTROL), name="control")(control)
