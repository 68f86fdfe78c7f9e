"""What a local Kafka node is told (server and log4j2 properties), and small probes of it;
pure or one socket/metadata call each, so the wiring is testable without a JVM."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.kafka.topics import replication_for

log = logging.getLogger("localdev.kafka")
log.addHandler(logging.NullHandler())  # librdkafka's connect-refused noise must not hit stderr

#: First port of a local cluster: node i (from 1) listens on CLUSTER_PORT + 100 * (i - 1)
#: and its controller on the port after it: 9192/9193, 9292/9293, 9392/9393.
CLUSTER_PORT = 9192
CLUSTER_PORT_STEP = 100
MAX_BROKERS = 9


class LocalKafkaError(Exception):
    """Why the local broker could not come up or go down; the message is one human line."""


def cluster_ports(base: int, brokers: int) -> list[tuple[int, int]]:
    """(broker, controller) ports of each node of a cluster whose first node listens on
    `base`; LocalKafkaError when the last one would not be a TCP port."""
    if brokers < 1:
        raise LocalKafkaError(f"a cluster needs at least 1 broker, not {brokers}")
    # Checked before the list is built: `--brokers 10**40` must not build it.
    if base < 1 or base + CLUSTER_PORT_STEP * (brokers - 1) + 1 > 65535:
        raise LocalKafkaError(f"cluster ports from {base} for {brokers} brokers run past 65535")
    return [(base + CLUSTER_PORT_STEP * i, base + CLUSTER_PORT_STEP * i + 1)
            for i in range(brokers)]


def quorum_voters(controller_ports: list[int]) -> str:
    """The static KRaft quorum: node i (from 1) is a voter at its controller port."""
    return ",".join(f"{i}@127.0.0.1:{port}" for i, port in enumerate(controller_ports, 1))


def render_server_properties(port: int, controller_port: int, data_dir: Path,
                             node_id: int = 1, voters: str | None = None,
                             brokers: int = 1) -> str:
    """One KRaft node (broker and controller in one JVM) of a cluster of `brokers` nodes
    whose quorum is `voters` (default: this node alone). Internal topics and the broker
    defaults follow hookstream's replication rule for that many brokers (1 copy on one
    node; 3 copies, min.insync.replicas 2 on three)."""
    rep = replication_for(brokers)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters or f'{node_id}@127.0.0.1:{controller_port}'}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        # Every internal topic must be satisfiable by the brokers there are.
        f"offsets.topic.replication.factor={rep.factor}",
        f"transaction.state.log.replication.factor={rep.factor}",
        f"transaction.state.log.min.isr={rep.min_insync}",
        f"share.coordinator.state.topic.replication.factor={rep.factor}",
        f"share.coordinator.state.topic.min.isr={rep.min_insync}",
        f"default.replication.factor={rep.factor}",
        f"min.insync.replicas={rep.min_insync}",
        "unclean.leader.election.enable=false",
        "group.initial.rebalance.delay.ms=0",  # no 3 s pause before the first assignment
        "auto.create.topics.enable=false",  # topics are created explicitly; a typo must fail
        "log.retention.hours=24",  # local dev: bound disk use
        "log.retention.check.interval.ms=60000",
        # The log cleaner's dedupe buffer is one array on the heap, 128 MB by default: a
        # quarter of a local node's 512 MB, so G1's old generation stayed above its marking
        # threshold and marked again every few seconds (a Remark pause of 10-30 ms each,
        # then mixed collections). 32 MB still holds 1.3 million keys a pass (24 bytes a
        # key, 0.9 full): a million subscriptions compact in one.
        "log.cleaner.dedupe.buffer.size=33554432",
        # Kafka 4.0 refuses to re-register a restarted node until its old session expires
        # (KAFKA-19130, fixed in 4.1): 9 s by default, most of a restart. Raise if it fences.
        # It is also how long a killed node's partitions wait for a new leader.
        "broker.heartbeat.interval.ms=500",
        "broker.session.timeout.ms=3000",
        "",
    ])


def render_log4j2_properties(log_dir: Path) -> str:
    """Broker logs go to a size-capped file, not to the terminal that ran ``up``."""
    quiet = ["kafka.request.logger", "kafka.network.RequestChannel$", "kafka.authorizer.logger"]
    a = "appender.file"
    lines = [
        "status = warn",
        f"{a}.type = RollingFile", f"{a}.name = FILE",
        f"{a}.fileName = {log_dir / 'server.log'}", f"{a}.filePattern = {log_dir}/server.log.%i",
        f"{a}.layout.type = PatternLayout", f"{a}.layout.pattern = [%d] %p %m (%c)%n",
        f"{a}.policies.type = Policies", f"{a}.policies.size.type = SizeBasedTriggeringPolicy",
        f"{a}.policies.size.size = 20MB",
        f"{a}.strategy.type = DefaultRolloverStrategy", f"{a}.strategy.max = 3",
        "rootLogger.level = INFO", "rootLogger.appenderRef.file.ref = FILE",
    ]
    for i, name in enumerate(quiet):
        lines += [f"logger.q{i}.name = {name}", f"logger.q{i}.level = WARN"]
    return "\n".join(lines) + "\n"


def heap_mb(heap: str) -> int:
    """Parse 512m / 1g up front: a heap the JVM would refuse is one clear error here."""
    h = heap.strip().lower()
    if len(h) >= 2 and h[:-1].isdigit() and h[-1] in "mg":
        return int(h[:-1]) * (1024 if h[-1] == "g" else 1)
    raise LocalKafkaError(f"heap size {heap!r} is not like '512m' or '1g'")


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def broker_ids(bootstrap: str, timeout: float) -> set[int]:
    """The brokers a metadata request names (registered and not fenced); empty when it
    does not round-trip."""
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap}, logger=log)
        return set(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return set()


def answers_as_broker(bootstrap: str, timeout: float) -> bool:
    """True only when a metadata request round-trips and names at least one broker."""
    return bool(broker_ids(bootstrap, timeout))
