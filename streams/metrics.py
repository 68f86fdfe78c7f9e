"""Every metric the worker exports on /metrics, listed once (prometheus-client).

Counters and histograms are updated where things happen; gauges about Kafka (lag, retry
backlog) and the tables are refreshed by `refresh_lag` every few seconds, not on scrape,
so a scrape never waits on the broker.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

#: counter: attempts and dead letters by outcome (success, retrying, dead, disabled, failed)
#: and the stage the job came from (deliveries, retry.1m, retry.5m, retry.30m, test)
DELIVERIES = Counter("hookstream_deliveries_total", "Delivery outcomes",
                     ["outcome", "stage"], registry=REGISTRY)
#: histogram: event timestamp to the receiver's 2xx, seconds
END_TO_END = Histogram("hookstream_end_to_end_seconds", "Event time to successful delivery",
                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                900, 1800, 3600), registry=REGISTRY)
#: histogram: one HTTP attempt, seconds
ATTEMPT = Histogram("hookstream_attempt_seconds", "One delivery attempt",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                    registry=REGISTRY)
#: counter: jobs parked on the first retry topic, unattempted, because their webhook's
#: endpoint could not take them soon (streams.delivery.pressure)
DEFERRED = Counter("hookstream_deliveries_deferred_total", "Jobs parked, not attempted",
                   registry=REGISTRY)
#: counter: jobs dead-lettered, by reason
DEAD_LETTERS = Counter("hookstream_dead_letters_total", "Jobs dead-lettered", ["reason"],
                       registry=REGISTRY)
#: counter: messages quarantined to hookstream.invalid, by source topic
INVALID = Counter("hookstream_invalid_messages_total", "Messages quarantined", ["topic"],
                  registry=REGISTRY)
#: counter: records whose handler kept raising for a reason other than bad input, so they
#: were quarantined after their last try; by stage (fanout, delivery, control, deadletters,
#: history). Any increase is a bug or a record we did not foresee: read hookstream.invalid
HANDLER_FAILURES = Counter("hookstream_handler_failures_total",
                           "Records quarantined after their handler kept failing", ["stage"],
                           registry=REGISTRY)
#: counter: requests whose credentials did not authenticate, by surface (api, console)
AUTH_FAILURES = Counter("hookstream_auth_failures_total", "Failed authentications",
                        ["surface"], registry=REGISTRY)
#: gauge: subscriptions in this worker's table, by state
SUBSCRIPTIONS = Gauge("hookstream_subscriptions", "Subscriptions by state", ["state"],
                      registry=REGISTRY)
#: gauge: records not yet consumed, by consumer group and topic
LAG = Gauge("hookstream_consumer_lag", "Consumer lag", ["group", "topic"], registry=REGISTRY)
#: gauge: jobs waiting in each retry topic (the delivery group's lag there)
RETRY_BACKLOG = Gauge("hookstream_retry_backlog", "Jobs waiting in a retry topic", ["topic"],
                      registry=REGISTRY)


class Throughput:
    """Recent deliveries per second and success ratio, sampled from the counters."""

    def __init__(self, keep: int = 90) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (time, successes, others)
        self._keep = keep

    def sample(self, now: float) -> None:
        ok = other = 0.0
        for metric in DELIVERIES.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    if s.labels.get("outcome") == "success":
                        ok += s.value
                    else:
                        other += s.value
        self.samples = [*self.samples, (now, ok, other)][-self._keep:]

    def rates(self) -> list[tuple[float, float, float | None]]:
        """(time, deliveries/s, success ratio or None) between consecutive samples."""
        out = []
        for (t0, ok0, other0), (t1, ok1, other1) in zip(self.samples, self.samples[1:],
                                                         strict=False):
            done = (ok1 - ok0) + (other1 - other0)
            out.append((t1, done / max(t1 - t0, 1e-9), (ok1 - ok0) / done if done else None))
        return out


THROUGHPUT = Throughput()


def render() -> bytes:
    return generate_latest(REGISTRY)


def stage_of(topic: str) -> str:
    """`<prefix>hookstream.retry.5m` -> `retry.5m`, `<prefix>hookstream.deliveries` -> ..."""
    return topic.rsplit("hookstream.", 1)[-1]


class LagProbe:
    """Consumer lag of our groups, from committed offsets and end offsets (confluent-kafka).

    Blocking calls: run it in a thread.
    """

    def __init__(self, bootstrap: str) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        # Only for watermark queries; it never subscribes or commits.
        self._watermarks = Consumer({"bootstrap.servers": bootstrap,
                                     "group.id": "hookstream-lag-probe",
                                     "enable.auto.commit": False})

    def close(self) -> None:
        self._watermarks.close()

    def lag(self, group: str, topics: list[str], timeout: float = 5.0) -> dict[str, int]:
        """Records not yet committed by `group`, per topic."""
        metadata = self._admin.list_topics(timeout=timeout)
        tps = [TopicPartition(t, p) for t in topics if t in metadata.topics
               for p in metadata.topics[t].partitions]
        if not tps:
            return {}
        futures = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)], request_timeout=timeout)
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in futures[group].result().topic_partitions}
        lag: dict[str, int] = {}
        for tp in tps:
            low, high = self._watermarks.get_watermark_offsets(tp, timeout=timeout)
            done = committed.get((tp.topic, tp.partition), -1)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - (done if done >= 0 else low))
        return lag

    def refresh(self, groups: dict[str, list[str]], retry_topics: list[str],
                delivery_group: str) -> dict[str, dict[str, int]]:
        """Update the lag gauges; return what was measured (for `hookstream status`)."""
        measured: dict[str, dict[str, int]] = {}
        for group, topics in groups.items():
            try:
                per_topic = self.lag(group, topics)
            except Exception as exc:  # the broker may be restarting: next time
                log.warning("lag of %s unavailable: %s", group, exc)
                continue
            measured[group] = per_topic
            for topic, value in per_topic.items():
                LAG.labels(group=group, topic=topic).set(value)
                if group == delivery_group and topic in retry_topics:
                    RETRY_BACKLOG.labels(topic=stage_of(topic)).set(value)
        return measured
