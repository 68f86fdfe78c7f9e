"""The one replication rule (streams.kafka.topics.replication_for): the broker count the
cluster reports -> replication factor and min.insync.replicas, and what overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev.kafka import render_server_properties
from streams.kafka.topics import Replication, replication_for
from streams.settings import SettingsError


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)),
     (5, Replication(3, 2)), (12, Replication(3, 2))],
)
def test_default_follows_the_broker_count(brokers: int, expected: Replication) -> None:
    assert replication_for(brokers) == expected


def test_settings_override_the_default() -> None:
    assert replication_for(5, factor=5) == Replication(5, 2)
    assert replication_for(5, factor=5, min_insync=3) == Replication(5, 3)
    assert replication_for(3, min_insync=3) == Replication(3, 3)
    assert replication_for(3, factor=1) == Replication(1, 1)
    assert replication_for(3, factor=2) == Replication(2, 1)
    assert replication_for(1, factor=1, min_insync=1) == Replication(1, 1)


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync", "message"),
    [
        (1, 3, None, "HOOKSTREAM_REPLICATION_FACTOR=3 is more than the 1 broker of"),
        (3, 4, None, "HOOKSTREAM_REPLICATION_FACTOR=4 is more than the 3 brokers of"),
        (1, None, 2, "HOOKSTREAM_MIN_INSYNC_REPLICAS=2 must be between 1 and the "
                     "replication factor 1"),
        (3, 2, 3, "HOOKSTREAM_MIN_INSYNC_REPLICAS=3 must be between 1"),
        (3, 0, None, "HOOKSTREAM_REPLICATION_FACTOR must be at least 1"),
        (0, None, None, "no brokers"),
    ],
)
def test_what_the_cluster_cannot_honour_names_the_variable(
        brokers: int, factor: int | None, min_insync: int | None, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        replication_for(brokers, factor, min_insync)


@pytest.mark.parametrize("brokers", [1, 3])
def test_local_brokers_configure_internal_topics_by_the_same_rule(brokers: int) -> None:
    text = render_server_properties(9192, 9193, Path("d"), node_id=1, brokers=brokers)
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    rule = replication_for(brokers)
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor",
                "default.replication.factor"):
        assert props[key] == str(rule.factor), key
    for key in ("transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr",
                "min.insync.replicas"):
        assert props[key] == str(rule.min_insync), key


def test_strimzi_topics_carry_the_rule_for_three_brokers() -> None:
    """deploy/kubernetes/topics.yaml (generated; test_deploy_manifests checks it is current)
    gives every topic what `topics create` gives it on a 3-broker cluster."""
    text = (Path(__file__).resolve().parents[2] / "deploy/kubernetes/topics.yaml").read_text()
    docs = [d for d in text.split("\n---\n") if "kind: KafkaTopic" in d]
    rule = replication_for(3)
    assert docs and all(f"  replicas: {rule.factor}\n" in d for d in docs)
    assert all(f'    min.insync.replicas: "{rule.min_insync}"' in d for d in docs)
