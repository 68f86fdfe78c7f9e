"""Every topic the pipeline uses: its name, partitions and configs, in one place.

Names get the deployment's prefix (HOOKSTREAM_TOPIC_PREFIX) so tests and deployments can
share a broker. Creating them is `streams.kafka.admin.create_topics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import Settings, SettingsError

CONTROL = "hookstream.control"
SUBSCRIPTIONS = "hookstream.subscriptions"
DELIVERIES = "hookstream.deliveries"
DELIVERY_LOG = "hookstream.delivery-log"
RETRY_TOPICS = ("hookstream.retry.1m", "hookstream.retry.5m", "hookstream.retry.30m")
DLQ = "hookstream.dlq"
INVALID = "hookstream.invalid"
OPERATIONS = "hookstream.operations"
#: API keys (hashes only), keyed by key id.
API_KEYS = "hookstream.apikeys"
#: Responses to POSTs with an Idempotency-Key, keyed by <key id>:<idempotency key>.
IDEMPOTENCY = "hookstream.idempotency"
#: Changelog of the per-webhook delivery history table (streams.history.table).
DELIVERY_HISTORY = "hookstream.delivery-history"
#: Console sessions ended by a sign-out (key: session id, value: its expiry in ms), so a
#: signed-out cookie is refused by every worker. Kept a little longer than a session lives.
CONSOLE_LOGOUTS = "hookstream.console-logouts"
#: Which dead letters were replayed (key `<partition>:<offset>`), so a replay runs once.
DLQ_REPLAYED = "hookstream.dlq-replayed"

_WEEK_MS = str(7 * 24 * 3600 * 1000)

#: Kafka's default limit on a record batch (message.max.bytes), set on every topic we
#: create so that the stages can check a record against it before producing: a refusal by
#: the broker breaks an idempotent aiokafka producer's sequence on that partition (every
#: later send to it fails with OutOfOrderSequenceNumber), which would stall the stage.
MAX_MESSAGE_BYTES = 1_048_588
#: hookstream.invalid takes twice as much: a copy of any record another topic accepted,
#: with its key and our headers (source, reason: about 1.2 KB) on top.
INVALID_MAX_MESSAGE_BYTES = 2 * MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Replication:
    """How many copies each partition of our topics has, and how many of them must hold a
    record before an `acks=all` produce succeeds."""

    factor: int
    min_insync: int


def replication_for(brokers: int, factor: int | None = None,
                    min_insync: int | None = None) -> Replication:
    """The one replication rule, from the number of brokers the cluster reports.

    By default 3 copies (fewer brokers: one per broker) and min.insync.replicas 2 when there
    are 3 copies or more, else 1: one broker can die without stopping `acks=all` producers,
    and on 3+ brokers an acknowledged record is on two of them. HOOKSTREAM_REPLICATION_FACTOR
    (`factor`) and HOOKSTREAM_MIN_INSYNC_REPLICAS (`min_insync`) override; a value the
    cluster cannot honour is a SettingsError naming the variable.
    """
    if brokers < 1:
        raise SettingsError("the cluster reports no brokers")
    rf = min(3, brokers) if factor is None else factor
    if rf < 1:
        raise SettingsError(f"HOOKSTREAM_REPLICATION_FACTOR must be at least 1, got {rf}")
    if rf > brokers:
        raise SettingsError(f"HOOKSTREAM_REPLICATION_FACTOR={rf} is more than the {brokers} "
                            f"broker{'s' if brokers > 1 else ''} of the cluster")
    isr = (2 if rf >= 3 else 1) if min_insync is None else min_insync
    if not 1 <= isr <= rf:
        raise SettingsError(f"HOOKSTREAM_MIN_INSYNC_REPLICAS={isr} must be between 1 and the "
                            f"replication factor {rf}")
    return Replication(rf, isr)


def domain_topic(family: str) -> str:
    return f"domain.{family}"


def max_message_bytes(name: str) -> int:
    """The size limit of one of our topics (unprefixed `name`), as all_topics creates it."""
    return INVALID_MAX_MESSAGE_BYTES if name == INVALID else MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic with its prefixed name.

    Control and subscriptions share a partition count: the subscriptions table is the
    changelog of the control agent, and faust writes a change to the partition its
    command came from.

    Retry topics stamp records with the broker's clock (LogAppendTime): the delivery stage
    holds a retry at most that topic's delay after it was appended (a time no producer can
    forge), however far away the due time its header claims.
    """
    n = settings.partitions
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    kept = {"retention.ms": _WEEK_MS}
    names: list[TopicSpec] = [
        TopicSpec(settings.topic(domain_topic(f)), n, dict(kept)) for f in settings.families
    ]
    names += [
        TopicSpec(settings.topic(CONTROL), n, dict(kept)),
        TopicSpec(settings.topic(SUBSCRIPTIONS), n, dict(compact)),
        TopicSpec(settings.topic(DELIVERIES), n, dict(kept)),
        TopicSpec(settings.topic(DELIVERY_LOG), n, dict(kept)),
        # Dead letters wait for an operator: keep them until replayed and well after.
        TopicSpec(settings.topic(DLQ), n, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(settings.topic(INVALID), n, {"retention.ms": str(30 * 24 * 3600 * 1000),
                                               "max.message.bytes":
                                                   str(INVALID_MAX_MESSAGE_BYTES)}),
        TopicSpec(settings.topic(OPERATIONS), n, dict(kept)),
        TopicSpec(settings.topic(DLQ_REPLAYED), n, dict(compact)),
        TopicSpec(settings.topic(DELIVERY_HISTORY), n, dict(compact)),
        TopicSpec(settings.topic(API_KEYS), n, dict(compact)),
        # Compacted and also deleted after a day: a key is honoured for 24 h.
        TopicSpec(settings.topic(IDEMPOTENCY), n,
                  {"cleanup.policy": "compact,delete", "retention.ms": str(48 * 3600 * 1000)}),
    ]
    names.append(TopicSpec(settings.topic(CONSOLE_LOGOUTS), n,
                           {"cleanup.policy": "compact,delete",
                            "retention.ms": str(9 * 3600 * 1000)}))
    names += [TopicSpec(settings.topic(t), n,
                        {**kept, "message.timestamp.type": "LogAppendTime"})
              for t in RETRY_TOPICS]
    for spec in names:
        spec.config.setdefault("max.message.bytes", str(MAX_MESSAGE_BYTES))
    return names
