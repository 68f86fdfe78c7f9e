"""Keeps a SubscriptionIndex up to date from the compacted hookstream.subscriptions topic.

Why every worker holds every subscription (a global view) instead of a partitioned table:
events are keyed by workspace, written by producers in any language whose partitioners
differ (Java murmur2, librdkafka crc32, Go fnv), so no partitioned table keyed by workspace
or webhook can be trusted to sit on the partition of the events that need it. A global
view needs no repartition hop and answers any lookup locally; it costs memory (about
600 bytes per subscription, the only copy: the control agent reads the current state here
too). faust's GlobalTable would do the same, but has open multi-worker
recovery bugs (faust-streaming#283), so this reads the topic with a plain consumer.
"""

from __future__ import annotations

from ..kafka.compacted import CompactedView, Record
from .index import SubscriptionIndex
from .model import Subscription


class SubscriptionsView(CompactedView):
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.index = SubscriptionIndex()
        super().__init__(bootstrap_servers, topic, self._apply_record)

    def _apply_record(self, record: Record) -> None:
        if record.value is None:
            if record.key is not None:
                self.index.delete(record.key.decode())
            return
        self.index.put(Subscription.decode(record.value))
