"""The fan-out stage: each domain event x its workspace's subscriptions -> delivery jobs.

One job per matching webhook (its event types, and its payload filter if it has one:
streams.core.filters) on hookstream.deliveries, keyed by webhook id, with a delivery id
derived from (event id, webhook id), so a reprocessed event yields the same ids.
Disabled webhooks get jobs too: the delivery stage dead-letters them (webhook_disabled), so
what happens while a webhook is off can be replayed once it is fixed. An event's offset is
committed only after its jobs are acknowledged (streams.pipeline.stage).
Operational events (`webhook.*`, `delivery.*`: streams.core.operational) are fanned out
like any other, except to the webhook they are about (`data.webhook_id`): a webhook never
receives news of itself, so a failing endpoint is not sent more of what it fails to take.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core import filters, operational
from ..core.events import InvalidEvent, decode_event
from ..core.timeutil import now_ms
from ..delivery.models import DeliveryJob, JobsOfEvent, delivery_id_for
from ..kafka.topics import DELIVERIES, domain_topic
from ..pipeline.clients import (
    ConsumerFactory,
    ProducerFactory,
    Record,
    kafka_consumer,
    kafka_producer,
)
from ..pipeline.records import Origin, Produce
from ..pipeline.stage import Stage
from ..settings import Settings
from ..subscriptions.view import SubscriptionsView
from ..telemetry import metrics

log = logging.getLogger(__name__)


class FanoutStage(Stage):
    group = "hookstream-fanout"

    def __init__(self, settings: Settings, view: SubscriptionsView, *,
                 consumer_factory: ConsumerFactory = kafka_consumer,
                 producer_factory: ProducerFactory = kafka_producer) -> None:
        super().__init__(settings, [settings.topic(domain_topic(f)) for f in settings.families],
                         drain_timeout=10.0, consumer_factory=consumer_factory,
                         producer_factory=producer_factory)
        self.view = view

    async def ready(self) -> None:
        await self.view.ready.wait()

    async def handle(self, record: Record, origin: Origin) -> list[Produce]:
        try:
            event = decode_event(record.value or b"", topic=origin.topic,
                                 partition=origin.partition, offset=origin.offset)
        except InvalidEvent as exc:
            log.warning("quarantined %s[%d]@%d: %s", origin.topic, origin.partition,
                        origin.offset, exc)
            metrics.INVALID.labels(topic=origin.topic.removeprefix(
                self.settings.topic_prefix)).inc()
            return [self.quarantine(record, origin, f"invalid event: {exc}")]
        # The domain record's timestamp, not now: a job made again from the same record (a
        # re-read after a crash) is then the same job instance, which the delivery stage's
        # duplicate guard recognises (streams.delivery.guard).
        created = record.timestamp if record.timestamp > 0 else now_ms()
        jobs = []
        document: dict[str, Any] | None = None  # what filters read, built if one asks
        encoder: tuple[str, JobsOfEvent] | None = None  # built for the first job
        about = operational.subject(event.type, event.data)
        for sub in self.view.index.subscribers(event.workspace_id, event.type,
                                               include_inactive=True):
            if sub.id == about:
                continue
            if sub.filter is not None:
                if document is None:
                    document = {"event": event.type, "workspace_id": event.workspace_id,
                                "data": event.data}
                if not filters.stored(sub.filter).matches(document):
                    continue
            if encoder is None or sub.workspace_id != encoder[0]:
                encoder = (sub.workspace_id, JobsOfEvent(DeliveryJob(
                    delivery_id="", webhook_id="", workspace_id=sub.workspace_id,
                    event_id=event.id, event_type=event.type,
                    event_timestamp=event.timestamp, data_json=event.data_json, attempt=1,
                    created_at=created, source_topic=origin.topic,
                    source_partition=origin.partition, source_offset=origin.offset)))
            jobs.append(Produce(DELIVERIES, sub.id, encoder[1].encode(
                delivery_id_for(event.id, sub.id), sub.id)))
        return jobs
