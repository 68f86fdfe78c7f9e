"""Creating and describing our topics on a real broker (confluent-kafka AdminClient)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

from ..settings import Settings, SettingsError
from .topics import Replication, TopicSpec, all_topics, replication_for


class AdminError(RuntimeError):
    """The broker refused or could not be reached; the message is one line."""


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool


class MissingTopic(AdminError):
    """A topic we read does not exist (yet): the message says how to create it."""


def partitions_of(bootstrap: str, name: str) -> list[int]:
    """The partition numbers of topic `name`, or MissingTopic (AdminError if the broker
    cannot be reached). Blocking (a metadata call)."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap},
                               logger=logging.getLogger("hookstream.kafka")
                               ).list_topics(name, timeout=30)
    except KafkaException as exc:
        raise AdminError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    found = metadata.topics.get(name)
    if found is None or found.error is not None or not found.partitions:
        raise MissingTopic(f"topic {name} does not exist; run `hookstream topics create`")
    return sorted(found.partitions)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def _metadata(admin: AdminClient, settings: Settings, timeout: float) -> ClusterMetadata:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise AdminError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None


def _replication(metadata: ClusterMetadata, settings: Settings) -> Replication:
    """streams.kafka.topics.replication_for, for the brokers this cluster reports.

    Those are the live brokers and any that hold a replica of an existing topic: a broker
    that is down while a worker starts does not make the topics it creates smaller.
    """
    brokers = set(metadata.brokers)
    for topic in metadata.topics.values():
        for partition in topic.partitions.values():
            brokers.update(partition.replicas)
    try:
        return replication_for(len(brokers), settings.replication_factor,
                               settings.min_insync_replicas)
    except SettingsError as exc:
        raise AdminError(f"{exc} (Kafka at {settings.bootstrap_servers})") from None


def cluster_replication(settings: Settings, timeout: float = 30.0) -> Replication:
    """The replication our topics get on the cluster at `settings.bootstrap_servers`."""
    return _replication(_metadata(admin_client(settings), settings, timeout), settings)


def with_replication(settings: Settings, timeout: float = 30.0) -> Settings:
    """`settings` with the replication settled (from the cluster's size unless set)."""
    replication = cluster_replication(settings, timeout)
    return replace(settings, replication_factor=replication.factor,
                   min_insync_replicas=replication.min_insync)


def create_topics(settings: Settings, timeout: float = 30.0) -> list[TopicState]:
    """Create every topic that is missing; existing ones are left as they are.

    New topics get the replication of `_replication` (min.insync.replicas as a topic
    config); AdminError when the cluster cannot honour HOOKSTREAM_REPLICATION_FACTOR or
    HOOKSTREAM_MIN_INSYNC_REPLICAS.
    """
    admin = admin_client(settings)
    metadata = _metadata(admin, settings, timeout)
    replication = _replication(metadata, settings)
    existing = metadata.topics
    specs = all_topics(settings)
    missing: list[TopicSpec] = [s for s in specs if s.name not in existing]
    results: list[TopicState] = [
        TopicState(s.name, len(existing[s.name].partitions), False)
        for s in specs if s.name in existing
    ]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication.factor,
                      config={**s.config, "min.insync.replicas": str(replication.min_insync)})
             for s in missing],
            operation_timeout=timeout, request_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result()
                results.append(TopicState(spec.name, spec.partitions, True))
            except KafkaException as exc:
                if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":  # another worker won the race
                    results.append(TopicState(spec.name, spec.partitions, False))
                else:
                    raise AdminError(f"creating {spec.name}: {exc.args[0].str()}") from None
        _wait_until_visible(admin, {s.name: s.partitions for s in missing}, timeout,
                            set(metadata.brokers), settings.bootstrap_servers)
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda t: order[t.name])


def delete_topics(settings: Settings, timeout: float = 30.0) -> int:
    """Delete every topic of this deployment's prefix (a test's or a benchmark's); how many.

    Hundreds of left-over topics slow a one-node broker, and every client that reads all
    metadata with it: later runs would measure that rather than the pipeline.
    """
    if not settings.topic_prefix:
        raise AdminError("refusing to delete topics without a topic prefix")
    admin = admin_client(settings)
    names = [t for t in admin.list_topics(timeout=timeout).topics
             if t.startswith(settings.topic_prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=timeout).values():
            future.result()
    return len(names)


def _wait_until_visible(admin: AdminClient, partitions: dict[str, int], timeout: float,
                        brokers: set[int], bootstrap: str) -> None:
    """Until every broker's metadata shows the new topics with a leader for every partition.

    A created topic is not yet in every broker's metadata; a consumer group that assigns
    partitions before it is skips the topic ("Ignoring missing topic") and sits with
    nothing until its next metadata refresh, minutes later. On a cluster each broker
    applies the controller's records in its own time, so each must have answered with the
    topics (a metadata answer names its broker; fresh clients spread the questions).
    """
    deadline = time.monotonic() + timeout
    pending = set(brokers)

    def shown(metadata: ClusterMetadata) -> bool:
        topics = metadata.topics
        return all(name in topics and len(topics[name].partitions) == count
                   and all(p.leader >= 0 for p in topics[name].partitions.values())
                   for name, count in partitions.items())

    while True:
        if len(brokers) <= 1:
            if shown(admin.list_topics(timeout=timeout)):
                return
        else:
            for _ in range(len(pending)):
                client = AdminClient({"bootstrap.servers": bootstrap})
                metadata = client.list_topics(timeout=timeout)
                if shown(metadata):
                    pending.discard(metadata.orig_broker_id)  # -1: a bootstrap address
                pending &= set(metadata.brokers)  # one that died meanwhile is not waited for
            if not pending:
                return
        if time.monotonic() > deadline:
            raise AdminError(f"created topics not visible after {timeout:g}s")
        time.sleep(0.1)
