"""Config rendering for the local broker; no JVM or broker needed."""

import json
from pathlib import Path

import pytest

from localdev.kafka import (
    CLUSTER_PORT,
    LocalKafka,
    LocalKafkaError,
    cluster_ports,
    quorum_voters,
    render_server_properties,
)


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_listeners_and_quorum_use_both_ports() -> None:
    p = _props(render_server_properties(29092, 29093, Path("/tmp/x/data")))
    assert p["process.roles"] == "broker,controller"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert p["log.dirs"] == "/tmp/x/data"


def test_single_node_safe_defaults() -> None:
    p = _props(render_server_properties(9092, 9093, Path("d")))
    assert p["node.id"] == "1"
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["transaction.state.log.min.isr"] == "1"
    assert p["auto.create.topics.enable"] == "false"


def test_the_cleaners_dedupe_buffer_fits_a_small_heap_and_a_million_keys() -> None:
    """The dedupe buffer is one array on the heap for the node's life: a tenth at most of
    the smallest heap a local node gets (384 MB, in a cluster), so G1's old generation is
    not kept near its marking threshold; and one pass still compacts a million
    subscriptions (a SkimpyOffsetMap entry is a 16-byte hash and an 8-byte offset, filled
    to `log.cleaner.io.buffer.load.factor`, 0.9)."""
    p = _props(render_server_properties(9092, 9093, Path("d")))
    dedupe = int(p["log.cleaner.dedupe.buffer.size"])
    assert dedupe <= 384 * 2**20 // 10
    assert dedupe // 24 * 0.9 >= 1_000_000


def test_layout_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("HOOKSTREAM_KAFKA_PORT", "29092")
    monkeypatch.setenv("HOOKSTREAM_KAFKA_CONTROLLER_PORT", "29093")
    lk = LocalKafka.from_env()
    assert lk.bootstrap == "127.0.0.1:29092"
    assert lk.pid_file == tmp_path / "kafka" / "kafka.pid"
    assert lk.libs == tmp_path / "kafka-libs"
    st = lk.status()
    assert not st.running and st.pid is None and st.home == tmp_path


def test_bad_env_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_KAFKA_PORT", "kafka")
    with pytest.raises(LocalKafkaError, match="HOOKSTREAM_KAFKA_PORT"):
        LocalKafka.from_env()
    with pytest.raises(LocalKafkaError, match="heap"):
        LocalKafka(heap="lots")


# -- a cluster (`kafka up --brokers 3`) ------------------------------------------------
def test_cluster_ports_follow_one_documented_scheme() -> None:
    assert cluster_ports(CLUSTER_PORT, 3) == [(9192, 9193), (9292, 9293), (9392, 9393)]


@pytest.mark.parametrize("brokers", [0, -1, 565, 10**40])
def test_impossible_broker_counts_are_refused_before_any_list_is_built(brokers: int) -> None:
    with pytest.raises(LocalKafkaError):  # 10**40 built a list of 10**40 ports, for ever
        cluster_ports(CLUSTER_PORT, brokers)
    assert cluster_ports(29000, 2) == [(29000, 29001), (29100, 29101)]
    with pytest.raises(LocalKafkaError, match="past 65535"):
        cluster_ports(65400, 3)


def test_cluster_nodes_share_a_quorum_and_replicate_internal_topics() -> None:
    voters = quorum_voters([9193, 9293, 9393])
    assert voters == "1@127.0.0.1:9193,2@127.0.0.1:9293,3@127.0.0.1:9393"
    p = _props(render_server_properties(9292, 9293, Path("/d/node-2/data"), node_id=2,
                                        voters=voters, brokers=3))
    assert p["node.id"] == "2"
    assert p["controller.quorum.voters"] == voters
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:9292,CONTROLLER://127.0.0.1:9293"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9292"
    assert p["offsets.topic.replication.factor"] == "3"
    assert p["transaction.state.log.min.isr"] == "2"
    assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("3", "2")


def test_cluster_layout(tmp_path: Path) -> None:
    lk = LocalKafka(tmp_path, brokers=3)
    assert lk.bootstrap == "127.0.0.1:9192,127.0.0.1:9292,127.0.0.1:9392"
    assert [n.pid_file for n in lk.nodes] == [
        tmp_path / "kafka-cluster" / f"node-{i}" / "kafka.pid" for i in (1, 2, 3)]
    assert lk.libs == tmp_path / "kafka-libs"  # the single broker's jars, shared
    assert lk.heap == "384m" and LocalKafka(tmp_path).heap == "512m"
    st = lk.status()
    assert not st.running and st.pid is None
    assert [(n.id, n.bootstrap, n.running) for n in st.nodes] == [
        (1, "127.0.0.1:9192", False), (2, "127.0.0.1:9292", False), (3, "127.0.0.1:9392", False)]
    with pytest.raises(LocalKafkaError, match="no node 4"):
        lk.node(4)
    with pytest.raises(LocalKafkaError, match="--brokers must be between 1 and 9"):
        LocalKafka(tmp_path, brokers=0)


def test_brokers_run_with_kafkas_own_gc_settings(tmp_path: Path) -> None:
    """kafka-run-class.sh's G1 settings (a 20 ms pause goal), on every node: G1's default
    200 ms goal gave young pauses of 50-63 ms on two shared cores, which every produce and
    fetch waited for."""
    for lk in (LocalKafka(tmp_path), LocalKafka(tmp_path, brokers=3)):
        for node in lk.nodes:
            command = node.broker_command()
            jvm = command[1:command.index("-cp")]
            assert {"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                    "-XX:InitiatingHeapOccupancyPercent=35"} <= set(jvm)
            assert f"-Xmx{lk.heap}" in jvm and command[-2:] == ["kafka.Kafka", str(node.props)]


def _record(lk: LocalKafka, pid_files: bool) -> None:
    lk.dir.mkdir(parents=True)
    lk.layout_file.write_text(json.dumps(
        {"brokers": lk.brokers, "ports": [[n.port, n.controller_port] for n in lk.nodes]}))
    if pid_files:
        lk.nodes[1].pid_file.parent.mkdir(parents=True)
        lk.nodes[1].pid_file.write_text("999999999\n")  # crashed: no such process


def test_status_and_down_find_the_cluster_this_home_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("HOOKSTREAM_KAFKA_CLUSTER_PORT", "20000")
    assert LocalKafka.from_env().brokers == 1  # nothing recorded: the single broker
    assert LocalKafka.from_env(3).bootstrap == "127.0.0.1:20000,127.0.0.1:20100,127.0.0.1:20200"
    _record(LocalKafka(tmp_path, brokers=3, ports=[(21000, 21001), (21100, 21101),
                                                    (21200, 21201)]), pid_files=False)
    assert LocalKafka.from_env().brokers == 1  # brought down cleanly: no pid file left
    assert LocalKafka.from_env(3).port == 20000  # not running: the ports of the settings


def test_a_crashed_cluster_is_still_this_homes_kafka(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_HOME", str(tmp_path))
    _record(LocalKafka(tmp_path, brokers=3, ports=[(21000, 21001), (21100, 21101),
                                                    (21200, 21201)]), pid_files=True)
    lk = LocalKafka.from_env()
    assert (lk.brokers, lk.port) == (3, 21000)  # the ports it was started on
    assert "not running (3-broker cluster)" in lk.status().detail
    assert not lk.down()  # nothing alive to stop; the stale pid file goes
    assert not lk.nodes[1].pid_file.exists()


def test_a_home_keeps_the_size_of_its_cluster(tmp_path: Path) -> None:
    _record(LocalKafka(tmp_path, brokers=3), pid_files=False)
    with pytest.raises(LocalKafkaError, match="holds a 3-broker cluster; start it with "
                                              "--brokers 3"):
        LocalKafka(tmp_path, brokers=5).up(timeout=1)


def test_bad_cluster_port_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_KAFKA_CLUSTER_PORT", "nine")
    with pytest.raises(LocalKafkaError, match="HOOKSTREAM_KAFKA_CLUSTER_PORT"):
        LocalKafka.from_env(3)
