"""streams.kafka.topics: every topic, prefixed, with its partitions and configs."""

from __future__ import annotations

import pytest

from streams.kafka.topics import (
    INVALID,
    INVALID_MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES,
    RETRY_TOPICS,
    TopicSpec,
    all_topics,
    domain_topic,
    max_message_bytes,
)
from streams.settings import Settings

EXPECTED = {
    "domain.task", "domain.project", "domain.comment", "domain.user", "domain.webhook",
    "domain.delivery",
    "hookstream.control", "hookstream.subscriptions", "hookstream.deliveries",
    "hookstream.delivery-log", "hookstream.retry.1m", "hookstream.retry.5m",
    "hookstream.retry.30m", "hookstream.dlq", "hookstream.invalid", "hookstream.operations",
    "hookstream.dlq-replayed", "hookstream.delivery-history", "hookstream.apikeys",
    "hookstream.idempotency", "hookstream.console-logouts",
}
COMPACTED = {"hookstream.subscriptions", "hookstream.dlq-replayed",
             "hookstream.delivery-history", "hookstream.apikeys"}

#: State that is only worth keeping for a while: compacted, then deleted by age.
EXPIRING_STATE = {"hookstream.idempotency", "hookstream.console-logouts"}


def _by_name(settings: Settings) -> dict[str, TopicSpec]:
    specs = all_topics(settings)
    names = [spec.name for spec in specs]
    assert len(names) == len(set(names)), "duplicate topic"
    return {spec.name: spec for spec in specs}


@pytest.mark.parametrize("prefix", ["", "it-42.", "staging_"])
def test_every_topic_is_there_with_the_prefix(prefix: str) -> None:
    topics = _by_name(Settings(topic_prefix=prefix))
    assert set(topics) == {prefix + name for name in EXPECTED}


def test_state_topics_are_compacted() -> None:
    topics = _by_name(Settings(topic_prefix="p."))
    for name in COMPACTED:
        assert topics[f"p.{name}"].config["cleanup.policy"] == "compact"
    others = [spec for name, spec in topics.items()
              if name[2:] not in COMPACTED and name[2:] not in EXPIRING_STATE]
    assert all(spec.config.get("cleanup.policy", "delete") == "delete" for spec in others)
    for name in EXPIRING_STATE:
        assert topics[f"p.{name}"].config["cleanup.policy"] == "compact,delete"


def test_partitions_follow_settings() -> None:
    topics = _by_name(Settings(partitions=9))
    assert {spec.partitions for spec in topics.values()} == {9}


def test_control_and_subscriptions_share_partitions() -> None:
    topics = _by_name(Settings(partitions=4))
    assert topics["hookstream.control"].partitions == topics["hookstream.subscriptions"].partitions


def test_retention() -> None:
    topics = _by_name(Settings())
    week = str(7 * 24 * 3600 * 1000)
    month = str(30 * 24 * 3600 * 1000)
    assert topics["hookstream.deliveries"].config["retention.ms"] == week
    assert topics["hookstream.dlq"].config["retention.ms"] == month
    assert topics["hookstream.invalid"].config["retention.ms"] == month


def test_families_from_settings() -> None:
    topics = _by_name(Settings(families=("task",)))
    assert {name for name in topics if name.startswith("domain.")} == {"domain.task"}


def test_configs_are_not_shared() -> None:
    specs = all_topics(Settings())
    specs[0].config["retention.ms"] = "1"
    assert all(spec.config.get("retention.ms") != "1" for spec in all_topics(Settings()))
    assert len({id(spec.config) for spec in specs}) == len(specs)


def test_helpers() -> None:
    assert domain_topic("task") == "domain.task"
    assert RETRY_TOPICS == ("hookstream.retry.1m", "hookstream.retry.5m", "hookstream.retry.30m")


def test_retry_topics_take_the_brokers_time() -> None:
    """The delivery stage bounds a retry's hold by its append time: no producer may set it."""
    topics = _by_name(Settings(topic_prefix="p."))
    for name, spec in topics.items():
        expected = "LogAppendTime" if name[2:] in RETRY_TOPICS else None
        assert spec.config.get("message.timestamp.type") == expected, name


def test_every_topic_states_its_size_limit() -> None:
    """Producers check records against these before sending (a broker's refusal breaks an
    idempotent producer's sequence); the invalid topic takes a copy of any other's record."""
    topics = _by_name(Settings(topic_prefix="p."))
    for name, spec in topics.items():
        assert int(spec.config["max.message.bytes"]) == max_message_bytes(name[2:]), name
    assert max_message_bytes(INVALID) == INVALID_MAX_MESSAGE_BYTES
    assert {max_message_bytes(n[2:]) for n in topics if n[2:] != INVALID} == {
        MAX_MESSAGE_BYTES}
    assert INVALID_MAX_MESSAGE_BYTES >= MAX_MESSAGE_BYTES + 64 * 1024
