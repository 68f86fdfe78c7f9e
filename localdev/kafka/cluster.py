"""`hookstream kafka up/down/status`: one local broker, or a cluster of several, from the
same jars. See the package docstring for the layout under HOOKSTREAM_HOME."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from .config import (
    CLUSTER_PORT,
    MAX_BROKERS,
    LocalKafkaError,
    answers_as_broker,
    broker_ids,
    cluster_ports,
    heap_mb,
    log,
    port_open,
    quorum_voters,
    tail,
)
from .node import POLL, KafkaNode, NodeStatus

#: Seconds the last running node of a cluster gets to stop before SIGKILL (see `down`).
LAST_NODE_GRACE = 10.0


@dataclass(frozen=True)
class KafkaStatus:
    """Snapshot of the local broker or cluster, shaped for a one-line CLI answer.

    `running`: every node runs. `pid`: the single broker's (None for a cluster: see nodes).
    """

    running: bool
    pid: int | None
    bootstrap: str
    home: Path
    detail: str
    nodes: tuple[NodeStatus, ...] = ()


@dataclass(frozen=True)
class PartitionState:
    """Who holds one partition, by node id; leader -1 while it has none."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class _Recorded:
    """A home's cluster as `up` last laid it out (kafka-cluster/layout.json)."""

    brokers: int
    ports: list[tuple[int, int]]
    #: Some node has a pid file: running, or crashed (a clean `down` removes them).
    pid_files: bool


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LocalKafkaError(f"{name}={raw!r} is not a TCP port")
    return int(raw)


class LocalKafka:
    """Start/stop the local broker (``brokers=1``, as ever) or a cluster of ``brokers``
    KRaft nodes, each broker and controller, all voters of one static quorum."""

    def __init__(self, home: Path = Path(".hookstream"), port: int = 9092,
                 controller_port: int = 9093, heap: str | None = None, pom: Path | None = None,
                 brokers: int = 1, ports: Sequence[tuple[int, int]] | None = None) -> None:
        if not 1 <= brokers <= MAX_BROKERS:
            raise LocalKafkaError(f"--brokers must be between 1 and {MAX_BROKERS}, got {brokers}")
        self.home, self.brokers = home, brokers
        self.heap = heap or ("512m" if brokers == 1 else "384m")
        heap_mb(self.heap)  # one clear error now rather than a JVM that will not start
        env_pom = os.environ.get("HOOKSTREAM_KAFKA_POM")
        repo_pom = Path(__file__).resolve().parents[2] / "deploy/kafka/pom.xml"
        self.pom = (pom or (Path(env_pom) if env_pom else repo_pom)).resolve()
        root = home.resolve()  # absolute: these paths end up in java command lines and configs
        self.libs = root / "kafka-libs"
        if brokers == 1:
            self.dir = root / "kafka"
            layout = [(1, self.dir, port, controller_port)]
        else:
            self.dir = root / "kafka-cluster"
            found = list(ports or cluster_ports(CLUSTER_PORT, brokers))
            if len(found) != brokers:
                raise LocalKafkaError(f"{brokers} brokers need {brokers} port pairs")
            layout = [(i, self.dir / f"node-{i}", b, c) for i, (b, c) in enumerate(found, 1)]
        # Three JVMs starting at once on two shared cores: without C2 (the optimising JIT,
        # little use to a local test cluster) they come up in about half the time.
        jvm = () if brokers == 1 else ("-XX:TieredStopAtLevel=1",)
        self.nodes = [KafkaNode(i, d, self.libs, b, c, self.heap, jvm)
                      for i, d, b, c in layout]
        self.voters = quorum_voters([n.controller_port for n in self.nodes])
        first = self.nodes[0]
        self.port, self.controller_port = first.port, first.controller_port
        self.data, self.logs, self.pid_file = first.data, first.logs, first.pid_file
        self.props, self.log4j = first.props, first.log4j
        self.cluster_file, self.layout_file = self.dir / "cluster.id", self.dir / "layout.json"
        self.bootstrap = ",".join(n.bootstrap for n in self.nodes)

    @classmethod
    def from_env(cls, brokers: int | None = None) -> LocalKafka:
        """Build from HOOKSTREAM_* variables so the CLI and tests share one configuration path.

        Without `brokers`: the cluster this HOOKSTREAM_HOME runs (any node has a pid file),
        at the ports it was started on; otherwise the single broker.
        """
        home = Path(os.environ.get("HOOKSTREAM_HOME", ".hookstream"))
        heap = os.environ.get("HOOKSTREAM_KAFKA_HEAP") or None
        recorded = cls._recorded(home)
        if brokers is None:
            brokers = recorded.brokers if recorded and recorded.pid_files else 1
        if brokers == 1:
            return cls(home=home, port=_env_port("HOOKSTREAM_KAFKA_PORT", 9092),
                       controller_port=_env_port("HOOKSTREAM_KAFKA_CONTROLLER_PORT", 9093),
                       heap=heap)
        if recorded and recorded.brokers == brokers and recorded.pid_files:
            ports = recorded.ports
        else:
            ports = cluster_ports(_env_port("HOOKSTREAM_KAFKA_CLUSTER_PORT", CLUSTER_PORT),
                                  brokers)
        return cls(home=home, heap=heap, brokers=brokers, ports=ports)

    @staticmethod
    def _recorded(home: Path) -> _Recorded | None:
        """This home's cluster, as `up` last wrote it; None when there is none."""
        directory = home.resolve() / "kafka-cluster"
        try:
            layout = json.loads((directory / "layout.json").read_text())
            ports = [(int(b), int(c)) for b, c in layout["ports"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        pid_files = any((directory / f"node-{i}" / "kafka.pid").exists()
                        for i in range(1, len(ports) + 1))
        return _Recorded(len(ports), ports, pid_files)

    def ensure_jars(self) -> Path:
        """Download the Kafka classpath once; a half-finished download never counts as done."""
        if any(self.libs.glob("kafka_2.13-*.jar")):
            return self.libs
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise LocalKafkaError(f"'{tool}' is not on PATH; local Kafka needs JDK 17+, Maven")
        if not self.pom.is_file():
            raise LocalKafkaError(f"Kafka pom not found at {self.pom} (set HOOKSTREAM_KAFKA_POM)")
        tmp = self.libs.with_name("kafka-libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("downloading Kafka jars via %s", self.pom)
        cmd = ["mvn", "-q", "-B", "-f", str(self.pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            raise LocalKafkaError(f"mvn could not fetch the Kafka jars (exit {res.returncode}):\n"
                                  + tail(res.stdout + res.stderr, 15))
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        return self.libs

    # -- state ---------------------------------------------------------------------------
    def node(self, node_id: int) -> KafkaNode:
        if not 1 <= node_id <= len(self.nodes):
            raise LocalKafkaError(f"no node {node_id}: nodes are 1 to {len(self.nodes)}")
        return self.nodes[node_id - 1]

    def status(self) -> KafkaStatus:
        """Judge by the pid files only; a stale pid file reads as not running (and is kept)."""
        nodes = tuple(n.status() for n in self.nodes)
        where = f"data in {self.home / self.dir.name}"
        up = [n for n in nodes if n.running]
        if self.brokers == 1:
            pid = self.nodes[0].recorded_pid()
            if up:
                return KafkaStatus(True, up[0].pid, self.bootstrap, self.home,
                                   f"up (pid {up[0].pid}) at {self.bootstrap}, {where}", nodes)
            stale = f" (stale pid file: pid {pid} is not our broker)" if pid is not None else ""
            return KafkaStatus(False, None, self.bootstrap, self.home,
                               f"not running{stale}, {where}", nodes)
        if len(up) == len(nodes):
            pids = ", ".join(str(n.pid) for n in nodes)
            detail = f"{len(nodes)} brokers up (pids {pids}) at {self.bootstrap}, {where}"
        elif up:
            down = [str(n.id) for n in nodes if not n.running]
            which = f"node{'s' if len(down) > 1 else ''} {', '.join(down)}"
            detail = (f"{len(up)} of {len(nodes)} brokers up ({which} down) at "
                      f"{self.bootstrap}, {where}")
        else:
            detail = f"not running ({len(nodes)}-broker cluster), {where}"
        return KafkaStatus(len(up) == len(nodes), None, self.bootstrap, self.home, detail, nodes)

    def partition(self, topic: str, partition: int = 0, node: int | None = None,
                  timeout: float = 10.0) -> PartitionState:
        """Leader, replicas and in-sync replicas of one partition, from the metadata of
        `node` (default: any). Each broker applies the controller's changes in its own
        time, so right after one two brokers may answer differently."""
        where = self.node(node).bootstrap if node is not None else self.bootstrap
        # A client that knows one broker sends it its first metadata request.
        admin = AdminClient({"bootstrap.servers": where}, logger=log)
        try:
            found = admin.list_topics(topic, timeout=timeout).topics.get(topic)
        except KafkaException as exc:
            raise LocalKafkaError(f"no metadata from {where}: {exc}") from None
        if found is None or found.error is not None or partition not in found.partitions:
            raise LocalKafkaError(f"{topic} has no partition {partition} at {where}")
        p = found.partitions[partition]
        return PartitionState(p.leader, tuple(p.replicas), tuple(p.isrs))

    def leader_of(self, topic: str, partition: int = 0, node: int | None = None) -> int:
        """The node id leading `topic`'s `partition` (-1 while none does)."""
        return self.partition(topic, partition, node).leader

    # -- up --------------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> tuple[KafkaStatus, bool]:
        """Make every node answer; returns (status, started_now). Idempotent: a cluster
        with nodes down gets them started."""
        st = self.status()
        if st.running:
            return st, False
        self._refuse_the_other_kind()
        if self.brokers == 1:
            node = self.nodes[0]
            node.pid_file.unlink(missing_ok=True)
            if port_open(node.port):
                if not answers_as_broker(node.bootstrap, 5.0):
                    raise LocalKafkaError(f"port {node.port} is taken by something that is "
                                          "not Kafka")
                detail = f"a broker already answers at {node.bootstrap} (not ours; left alone)"
                return KafkaStatus(True, None, self.bootstrap, self.home, detail), False
        self._start([n for n in self.nodes if not n.status().running], timeout)
        return self.status(), True

    def start_node(self, node_id: int, timeout: float = 90.0) -> bool:
        """Start one node of the cluster (after `kill_node`); returns once the cluster lists
        it again as a broker. False when it was running already."""
        node = self.node(node_id)
        if node.status().running:
            return False
        self._start([node], timeout)
        return True

    def _refuse_the_other_kind(self) -> None:
        """One HOOKSTREAM_HOME runs one local Kafka: the single broker or one cluster."""
        recorded = self._recorded(self.home)
        if self.brokers == 1:
            if recorded and recorded.pid_files:
                other = LocalKafka(self.home, brokers=recorded.brokers, ports=recorded.ports)
                if any(n.running for n in other.status().nodes):
                    raise LocalKafkaError(f"{self.home} runs a {recorded.brokers}-broker cluster "
                                          "(`hookstream kafka down` it first)")
            return
        single = LocalKafka(self.home, heap=self.heap)
        if single.status().running:
            raise LocalKafkaError(f"{self.home} runs a single broker "
                                  "(`hookstream kafka down` it first)")
        if recorded and recorded.brokers != self.brokers:
            raise LocalKafkaError(
                f"{self.dir} holds a {recorded.brokers}-broker cluster; start it with "
                f"--brokers {recorded.brokers}, or remove that directory for {self.brokers}")

    def _start(self, nodes: list[KafkaNode], timeout: float) -> None:
        """Start `nodes` (formatting them on first use) and wait until each answers on its
        port and every running node's metadata lists every node of the cluster."""
        for node in nodes:
            node.pid_file.unlink(missing_ok=True)
            for port in (node.port, node.controller_port):
                if port_open(port):
                    raise LocalKafkaError(f"port {port} (node {node.id}) is already in use")
        self.ensure_jars()
        for node in nodes:
            node.write_config(self.voters if self.brokers > 1 else None, self.brokers)
        self._format([n for n in nodes if not n.formatted])
        if self.brokers > 1:
            self.layout_file.write_text(json.dumps(
                {"brokers": self.brokers,
                 "ports": [[n.port, n.controller_port] for n in self.nodes]}) + "\n")
        for node in nodes:
            node.spawn()
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while (remaining := deadline - time.monotonic()) > 0:
            for node in nodes:
                node.check_alive()
            running = {n.id for n in self.nodes if n.status().running}
            waiting = [n for n in waiting
                       if not (port_open(n.port)
                               and running <= broker_ids(n.bootstrap, min(5.0, remaining)))]
            if not waiting:
                return
            time.sleep(POLL)
        pids = ", ".join(f"node {n.id}: pid {n.spawned_pid}" for n in waiting)
        raise LocalKafkaError(f"Kafka ({pids}) did not answer as a member of the cluster in "
                              f"{timeout:.0f}s and is still running; see {self.dir}")

    def _format(self, nodes: list[KafkaNode]) -> None:
        """First use only: KRaft refuses to start on an unformatted log dir. Every node of
        a cluster gets the same cluster id; the formats run side by side."""
        if not nodes:
            return
        if self.cluster_file.exists():
            cluster_id = self.cluster_file.read_text().strip()
        else:  # same shape as `StorageTool random-uuid` (base64url, 16 bytes) without a JVM start
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.cluster_file.write_text(cluster_id + "\n")
        log.info("formatting %s for cluster %s", [str(n.data) for n in nodes], cluster_id)
        running = [(n, subprocess.Popen(n.format_command(cluster_id), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)) for n in nodes]
        for node, proc in running:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise LocalKafkaError(f"formatting {node.data} failed (exit {proc.returncode}):"
                                      "\n" + tail(out, 10))

    # -- down ------------------------------------------------------------------------------
    def down(self, timeout: float = 30.0) -> bool:
        """SIGTERM every node at once, so each closes its logs cleanly (fast restart);
        SIGKILL what still runs after ``timeout``. False when none was running.

        The last node of a cluster left running asks, in vain, a controller quorum that is
        gone to approve its shutdown (and Kafka waits minutes for that): it gets
        LAST_NODE_GRACE seconds, more than the 5 s its controller waits to hand over.
        """
        signalled = [(n, pid) for n in self.nodes if (pid := n.terminate()) is not None]
        deadline, alone_since = time.monotonic() + timeout, None
        pending = signalled
        while pending and time.monotonic() < deadline:
            pending = [(n, pid) for n, pid in pending if not n.gone(pid)]
            if self.brokers > 1 and len(pending) == 1 and not any(
                    n.status().running for n in self.nodes if n is not pending[0][0]):
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since > LAST_NODE_GRACE:
                    break
            if pending:
                time.sleep(POLL)
        for node, pid in pending:
            node.finish_stop(pid, 0.0)  # SIGKILL if it still runs, then wait for the exit
        for node, _ in signalled:
            node.pid_file.unlink(missing_ok=True)
        return bool(signalled)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        """Stop one node cleanly; False when it was not running."""
        return self.node(node_id).stop(timeout)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, for fault tests; its pid file stays, as after a real crash."""
        self.node(node_id).kill()

    def kill(self) -> None:
        """SIGKILL every node without shutdown, for crash tests; pid files stay."""
        st = self.status()
        if not any(n.running for n in st.nodes):
            raise LocalKafkaError(f"nothing to kill: {st.detail}")
        for node in self.nodes:
            if node.status().running:
                node.kill()
