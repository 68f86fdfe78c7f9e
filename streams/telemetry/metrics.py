"""Every metric the worker exports on /metrics, listed once (prometheus-client).

Counters and histograms are updated where things happen; gauges about Kafka (lag, retry
backlog) are refreshed by `LagProbe.refresh` every few seconds, not on scrape,
so a scrape never waits on the broker.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
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
#: counter: retries parked again, unattempted, because their topic's hold ended before the
#: due time a receiver's Retry-After set (streams.delivery.routing.repark)
REPARKED = Counter("hookstream_retries_reparked_total",
                   "Retries parked again to honour a Retry-After", registry=REGISTRY)
#: counter: jobs not attempted because a copy of them already has an outcome (a crash's
#: re-read, the fan-out making a job again): streams.delivery.guard
SKIPPED_DUPLICATE = Counter("hookstream_deliveries_skipped_duplicate_total",
                            "Jobs skipped: a copy already has an outcome", registry=REGISTRY)
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


@functools.cache
def delivered(outcome: str, stage: str) -> Counter:
    """DELIVERIES for one outcome and stage: `labels()` checks its arguments and takes a
    lock on every call, about 2% of a loaded worker's loop (py-spy, `make bench` (a)) for
    the one counted on every attempt. The pairs are few (outcomes by stage topics)."""
    return DELIVERIES.labels(outcome=outcome, stage=stage)


def stage_of(topic: str) -> str:
    """`<prefix>hookstream.retry.5m` -> `retry.5m`, `<prefix>hookstream.deliveries` -> ..."""
    return topic.rsplit("hookstream.", 1)[-1]


class LagProbe:
    """Consumer lag of our groups, from committed offsets and end offsets.

    On aiokafka, not confluent-kafka's AdminClient: librdkafka dereferences a NULL consumer
    group when an OffsetFetch is answered NOT_COORDINATOR on a client that has none (an
    AdminClient), and a broker restart produces exactly that answer. A worker died so, with
    "segfault at 58" in thread rdk:main, in the broker-restart test (the same crash as
    confluent-kafka-javascript#374).
    """

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> LagProbe:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await self._admin.start()
        # Only for end offsets and metadata: no group, never subscribes or commits.
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                         enable_auto_commit=False)
        await self._offsets.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
        if self._admin is not None:
            await self._admin.close()

    async def lag(self, group: str, topics: list[str], timeout: float = 5.0) -> dict[str, int]:
        """Records not yet committed by `group`, per topic."""
        assert self._admin is not None and self._offsets is not None
        async with asyncio.timeout(timeout):
            # Metadata of these topics only: a broker may hold thousands of others, and
            # decoding all of them every few seconds was a tenth of a loaded worker's CPU.
            described = await self._admin.describe_topics(topics)
            tps = [TopicPartition(t["topic"], p["partition"]) for t in described
                   if t["error_code"] == 0 for p in t["partitions"]]
            if not tps:
                return {}
            committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
            ends = await self._offsets.end_offsets(tps)
            starts = await self._offsets.beginning_offsets(tps)
        lag: dict[str, int] = {}
        for tp in tps:
            found = committed.get(tp)
            done = found.offset if found is not None and found.offset >= 0 else starts[tp]
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - done)
        return lag

    async def refresh(self, groups: dict[str, list[str]], retry_topics: list[str],
                      delivery_group: str) -> dict[str, dict[str, int]]:
        """Update the lag gauges; return what was measured (for `hookstream status`)."""
        measured: dict[str, dict[str, int]] = {}
        for group, topics in groups.items():
            try:
                per_topic = await self.lag(group, topics)
            except Exception as exc:  # the broker may be restarting: next time
                log.warning("lag of %s unavailable: %s", group, exc)
                continue
            measured[group] = per_topic
            for topic, value in per_topic.items():
                LAG.labels(group=group, topic=topic).set(value)
                if group == delivery_group and topic in retry_topics:
                    RETRY_BACKLOG.labels(topic=stage_of(topic)).set(value)
        return measured


def measure_lag(bootstrap: str,
                queries: dict[str, tuple[str, list[str]]]) -> dict[str, dict[str, int]]:
    """For each name, (consumer group, topics): that group's lag per topic. From outside an
    event loop (the CLI, tests)."""

    async def measure() -> dict[str, dict[str, int]]:
        async with LagProbe(bootstrap) as probe:
            return {name: await probe.lag(group, topics)
                    for name, (group, topics) in queries.items()}

    return asyncio.run(measure())
