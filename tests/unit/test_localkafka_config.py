"""Config rendering for the local broker; no JVM or broker needed."""

from pathlib import Path

import pytest

from localdev.kafka import LocalKafka, LocalKafkaError, render_server_properties


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
