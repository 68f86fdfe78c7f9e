"""`hookstream kafka up --brokers 3`: three real KRaft nodes on loopback, hookstream's
topics on them with 3 replicas and min.insync.replicas 2, and an acks=all producer that
keeps working while one broker is dead (kill -9) and after it comes back.

Its own HOOKSTREAM_HOME (the jars linked from the session's) and free ports: the broker on
9092 that the other tests share is not touched. About a minute on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicCollection
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from localdev.kafka import LocalKafka, LocalKafkaError, PartitionState, cluster_ports
from localdev.kafka.config import port_open
from streams.kafka.admin import AdminError, create_topics, with_replication
from streams.kafka.topics import DELIVERIES, all_topics
from streams.settings import Settings

from ..support.kafka import read_to_end
from ..support.waiting import wait_until
from ..support.workers import bindable

pytestmark = pytest.mark.integration

BROKERS = 3


def _free_base() -> int:
    """A first port whose cluster ports (base + 100 * i and the port after) are all free."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(bindable(p) for pair in cluster_ports(base, BROKERS) for p in pair):
            return base
    raise AssertionError("no free ports for a 3-node cluster")


def _cli(env: dict[str, str], *args: str) -> tuple[int, Any]:
    """`hookstream kafka ... --json`: the exit status and the one JSON document printed."""
    done = subprocess.run([sys.executable, "-m", "streams", "kafka", *args, "--json"],
                          capture_output=True, text=True, timeout=150, env=env)
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, int]]:
    """A HOOKSTREAM_HOME with the session's jars and a free port range; whatever runs
    there at the end is stopped by the pids it recorded."""
    jars = LocalKafka.from_env(1).ensure_jars()  # the session's own (downloaded once)
    (tmp_path / "kafka-libs").symlink_to(jars)
    base = _free_base()
    monkeypatch.setenv("HOOKSTREAM_HOME", str(tmp_path))
    # In-process LocalKafka must find the running cluster's ports without being told.
    monkeypatch.delenv("HOOKSTREAM_KAFKA_CLUSTER_PORT", raising=False)
    try:
        yield tmp_path, base
    finally:
        LocalKafka(tmp_path, brokers=BROKERS, ports=cluster_ports(base, BROKERS)).down()


def _produce(bootstrap: str, topic: str, value: bytes) -> int:
    """One record with acks=all; its offset once every in-sync replica has it."""
    reports: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "message.timeout.ms": 30000})
    producer.produce(topic, value, b"key", partition=0,
                     on_delivery=lambda err, msg: reports.append((err, msg)))
    assert producer.flush(40) == 0, "not acknowledged"
    ((err, msg),) = reports
    assert err is None, err
    offset: int = msg.offset()
    return offset


def _gone(kafka: LocalKafka, node_id: int, pid: int) -> bool:
    return kafka.node(node_id).gone(pid)


@pytest.mark.timeout(300)  # three JVMs start twice on a loaded 2-core machine
def test_three_brokers_keep_acks_all_writes_through_a_kill_9(
        home: tuple[Path, int]) -> None:
    path, base = home
    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - began - sum(phases.values())

    env = {**os.environ, "HOOKSTREAM_HOME": str(path), "HOOKSTREAM_KAFKA_CLUSTER_PORT": str(base)}

    code, up = _cli(env, "up", "--brokers", str(BROKERS), "--timeout", "120")
    phase("up")
    expected = [f"127.0.0.1:{b}" for b, _ in cluster_ports(base, BROKERS)]
    assert (code, up["status"], up["running"]) == (0, "started", True)
    assert up["bootstrap"] == ",".join(expected)
    assert [(n["id"], n["bootstrap"], n["running"]) for n in up["nodes"]] == [
        (i, b, True) for i, b in enumerate(expected, 1)]
    pids = {n["id"]: n["pid"] for n in up["nodes"]}
    bootstrap = up["bootstrap"]
    # status, with no --brokers and no port setting, knows the cluster this home runs.
    env_without_port = {k: v for k, v in env.items() if k != "HOOKSTREAM_KAFKA_CLUSTER_PORT"}
    code, status = _cli(env_without_port, "status")
    assert (code, status["running"], status["bootstrap"]) == (0, True, bootstrap)
    assert {n["id"]: n["pid"] for n in status["nodes"]} == pids

    # hookstream's topics: 3 replicas, min.insync.replicas 2 set on each topic.
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:6]}.",
                        partitions=3)
    resolved = with_replication(settings)
    assert (resolved.replication_factor, resolved.min_insync_replicas) == (3, 2)
    states = create_topics(settings)
    names = [s.name for s in states]
    assert names == [s.name for s in all_topics(settings)] and all(s.created for s in states)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name, future in admin.describe_topics(TopicCollection(names)).items():
        partitions = future.result(timeout=30).partitions
        assert len(partitions) == 3, name
        assert all(len(p.replicas) == 3 for p in partitions), name
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    for resource, future in admin.describe_configs(resources).items():
        entry = future.result(timeout=30)["min.insync.replicas"]
        assert entry.value == "2", resource.name
        assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, resource.name
    # More copies than brokers, or more in-sync than copies: one line naming the variable.
    with pytest.raises(AdminError, match="HOOKSTREAM_REPLICATION_FACTOR=4 is more than "
                                         "the 3 brokers"):
        create_topics(replace(settings, topic_prefix="never.", replication_factor=4))
    with pytest.raises(AdminError, match="HOOKSTREAM_MIN_INSYNC_REPLICAS=4"):
        create_topics(replace(settings, topic_prefix="never.", min_insync_replicas=4))

    phase("topics")
    topic = settings.topic(DELIVERIES)
    first = _produce(bootstrap, topic, b"before")
    kafka = LocalKafka.from_env()  # no size, no ports: the cluster this home runs
    assert (kafka.brokers, kafka.bootstrap) == (BROKERS, bootstrap)
    wait_until(lambda: len(kafka.partition(topic).isr) == 3, what="3 replicas in sync")

    # kill -9 the partition's leader: another takes over, with 2 in sync, and acks=all
    # writes go on.
    victim = kafka.leader_of(topic)
    kafka.kill_node(victim)
    assert _gone(kafka, victim, pids[victim])

    def taken_over() -> PartitionState | None:
        try:
            state = kafka.partition(topic)
        except LocalKafkaError:  # no metadata answer in the middle of the election: ask again
            return None
        return state if state.leader not in (-1, victim) and victim not in state.isr else None

    after_kill = wait_until(taken_over, timeout=30,
                            what=f"a new leader and node {victim} out of the ISR")
    assert after_kill is not None and len(after_kill.isr) == 2
    phase("failover")
    code, status = _cli(env, "status")
    assert (code, status["running"]) == (1, False)  # a node down: a "no", printed
    assert [n["running"] for n in status["nodes"]] == [i != victim for i in range(1, 4)]
    second = _produce(bootstrap, topic, b"while one broker is dead")
    assert second > first
    phase("status, produce")

    # It comes back, catches up and is in sync again on every partition of ours.
    assert kafka.start_node(victim)
    restarted = kafka.node(victim).status().pid
    assert restarted is not None and restarted != pids[victim]
    phase("restart")

    def all_in_sync() -> bool:
        """As every node's metadata has it (each applies the ISR change in its own time)."""
        for node in kafka.nodes:
            found = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(
                timeout=10).topics
            if not all(len(found[name].partitions[p].isrs) == 3
                       for name in names for p in found[name].partitions):
                return False
        return True

    wait_until(all_in_sync, timeout=60, what=f"node {victim} back in every ISR")
    assert all(victim in kafka.partition(topic, node=n).isr for n in range(1, 4))
    phase("in sync")
    _produce(bootstrap, topic, b"after the restart")
    values = [m.value() for m in read_to_end(bootstrap, topic)]
    assert values == [b"before", b"while one broker is dead", b"after the restart"]

    code, down = _cli(env_without_port, "down")
    phase("down")
    assert (code, down["status"], down["running"]) == (0, "stopped", False)
    assert not any(n["running"] for n in down["nodes"])
    for node_id, pid in {**pids, victim: restarted}.items():  # the killed one: gone above
        assert _gone(kafka, node_id, pid), f"node {node_id} (pid {pid}) still runs"
    assert not any(port_open(p) for pair in cluster_ports(base, BROKERS) for p in pair)
    assert not any((path / "kafka-cluster" / f"node-{i}" / "kafka.pid").exists()
                   for i in range(1, 4))
    print("\n3-node cluster: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
