"""Control agent: commands from hookstream.control -> the subscriptions table.

The table's changelog IS the compacted hookstream.subscriptions topic (Avro Subscription
values keyed by webhook id, tombstone on delete), so faust writes each change there and
recovers the table from it on start. Commands for one webhook share a key, hence a
partition, hence are applied strictly in order.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..app import app, raw_table, raw_topic, settings
from ..quarantine import quarantine
from ..schemas import SchemaError
from ..timeutil import now_ms
from ..topics import CONTROL, SUBSCRIPTIONS
from .commands import InvalidCommand, Subscription, apply, decode_command

log = logging.getLogger(__name__)

box = settings.secret_box()

control_topic = raw_topic(CONTROL)
subscriptions = raw_table("subscriptions", changelog=SUBSCRIPTIONS)


@app.agent(control_topic)
async def control(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        try:
            command = decode_command(event.value or b"")
            key = event.key.decode() if isinstance(event.key, bytes) else None
            if key != command.webhook_id:
                # Keyed otherwise, two commands for one webhook could race on two partitions.
                raise InvalidCommand(
                    f"message key {key!r} must be the command's webhook_id "
                    f"{command.webhook_id!r}"
                )
            table_key = command.webhook_id.encode()
            stored = subscriptions.get(table_key)
            current = Subscription.decode(stored) if stored is not None else None
            updated = apply(current, command, now_ms(),
                            allow_insecure=settings.allow_insecure_targets,
                            rotation_grace_ms=int(settings.rotation_grace * 1000))
            if updated is not None:
                # A producer may send a plaintext secret; only sealed ones are stored.
                updated = replace(updated, secret=box.seal_if_plain(updated.secret))
            encoded = updated.encode() if updated is not None else None
        except (InvalidCommand, SchemaError) as exc:
            await quarantine(event, f"invalid command: {exc}")
            continue
        if updated is None or encoded is None:
            subscriptions.pop(table_key, None)
            log.info("webhook %s deleted", command.webhook_id)
        else:
            subscriptions[table_key] = encoded
            log.info("webhook %s: %s applied (active=%s)", updated.id, command.op, updated.active)
