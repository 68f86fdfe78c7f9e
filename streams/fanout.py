"""Fan-out agent: each domain event x its workspace's subscriptions -> delivery jobs.

One job per matching webhook on hookstream.deliveries, keyed by webhook id, with a
delivery id derived from (event id, webhook id) so a replayed event yields the same ids.
Disabled webhooks get jobs too: the delivery stage dead-letters them (webhook_disabled), so
what happens while a webhook is off can be replayed once it is fixed.
faust commits the event's offset only after these sends are acknowledged (acks=all).
"""

from __future__ import annotations

import logging

from .app import app, settings
from .delivery.models import DeliveryJob, delivery_id_for
from .events import InvalidEvent, decode_event
from .quarantine import quarantine
from .subscriptions.view import SubscriptionsView
from .timeutil import now_ms
from .topics import DELIVERIES, SUBSCRIPTIONS, domain_topic

log = logging.getLogger(__name__)

domain_topics = app.topic(
    *(settings.topic(domain_topic(f)) for f in settings.families),
    key_serializer="raw", value_serializer="raw", internal=False,
)
deliveries_topic = app.topic(
    settings.topic(DELIVERIES), key_serializer="raw", value_serializer="raw", internal=False
)

view = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))


@app.agent(domain_topics)
async def fanout(stream):  # type: ignore[no-untyped-def]
    await view.ready.wait()
    async for event in stream.events():
        message = event.message
        try:
            domain_event = decode_event(
                event.value or b"", topic=message.topic, partition=message.partition,
                offset=message.offset,
            )
        except InvalidEvent as exc:
            await quarantine(event, f"invalid event: {exc}")
            continue
        subscribers = view.index.subscribers(domain_event.workspace_id, domain_event.type,
                                             include_inactive=True)
        if not subscribers:
            continue
        created = now_ms()
        for sub in subscribers:
            job = DeliveryJob(
                delivery_id=delivery_id_for(domain_event.id, sub.id),
                webhook_id=sub.id, workspace_id=sub.workspace_id,
                event_id=domain_event.id, event_type=domain_event.type,
                event_timestamp=domain_event.timestamp, data_json=domain_event.data_json,
                attempt=1,
                created_at=created, source_topic=message.topic,
                source_partition=message.partition, source_offset=message.offset,
            )
            await deliveries_topic.send(key=sub.id.encode(), value=job.encode())
