"""Creating and describing our topics on a real broker (confluent-kafka AdminClient)."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .settings import Settings
from .topics import TopicSpec, all_topics


class AdminError(RuntimeError):
    """The broker refused or could not be reached; the message is one line."""


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def create_topics(settings: Settings, timeout: float = 30.0) -> list[TopicState]:
    """Create every topic that is missing; existing ones are left as they are."""
    admin = admin_client(settings)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise AdminError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    specs = all_topics(settings)
    missing: list[TopicSpec] = [s for s in specs if s.name not in existing]
    results: list[TopicState] = [
        TopicState(s.name, len(existing[s.name].partitions), False)
        for s in specs if s.name in existing
    ]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, settings.replication_factor, config=s.config)
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
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda t: order[t.name])
