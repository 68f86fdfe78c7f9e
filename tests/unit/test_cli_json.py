"""`--json` on every command: the one output rule, kafka up/down's answers, and where
`publish` says each event went. The commands against a real broker and worker are in
tests/integration/test_cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import typer.main

from localdev import kafka as localkafka
from localdev.kafka import KafkaStatus, LocalKafkaError, NodeStatus
from streams.cli import cli, main
from streams.cli.common import emit

#: Processes that run until stopped, not commands that answer: no result to print.
LONG_RUNNING = {"worker", "dev"}


def _commands(command: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every command under `command`, by its words ("webhooks delete")."""
    if isinstance(command, typer.core.TyperGroup):
        return {found: leaf for name, sub in command.commands.items()
                for found, leaf in _commands(sub, (*path, name)).items()}
    return {" ".join(path): command}


def test_every_command_but_the_long_running_ones_has_json() -> None:
    commands = _commands(typer.main.get_command(cli))
    assert {"webhooks delete", "dlq replay", "apikeys create", "kafka up"} <= set(commands)
    without = {path for path, command in commands.items()
               if not any("--json" in param.opts for param in command.params)}
    assert without == LONG_RUNNING


def test_emit_prints_one_document_or_the_human_text(capsys: pytest.CaptureFixture[str]) -> None:
    emit(True, {"webhook_id": "wh_1", "deleted": True}, "webhook wh_1 deleted")
    printed = capsys.readouterr()
    assert json.loads(printed.out) == {"webhook_id": "wh_1", "deleted": True}
    assert printed.err == ""
    emit(False, {"webhook_id": "wh_1", "deleted": True}, "webhook wh_1 deleted", "and more")
    assert capsys.readouterr().out == "webhook wh_1 deleted\nand more\n"


class FakeKafka:
    """LocalKafka's answers, and what up and down did to it."""

    instance: FakeKafka
    fail: str | None = None

    def __init__(self) -> None:
        self.running = False
        self.bootstrap = "127.0.0.1:19092"
        self.brokers: int | None = None

    @classmethod
    def from_env(cls, brokers: int | None = None) -> FakeKafka:
        cls.instance.brokers = brokers
        return cls.instance

    def status(self) -> KafkaStatus:
        pid = 4242 if self.running else None
        return KafkaStatus(self.running, pid, self.bootstrap, Path("/h"),
                           "up (pid 4242)" if self.running else "not running",
                           (NodeStatus(1, pid, self.bootstrap, self.running),))

    def up(self, timeout: float = 90.0) -> tuple[KafkaStatus, bool]:
        if self.fail:
            raise LocalKafkaError(self.fail)
        started = not self.running
        self.running = True
        return self.status(), started

    def down(self, timeout: float = 30.0) -> bool:
        stopped, self.running = self.running, False
        return stopped


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    FakeKafka.instance = FakeKafka()
    monkeypatch.setattr(localkafka, "LocalKafka", FakeKafka)
    return FakeKafka.instance


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["hookstream", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    printed = capsys.readouterr()
    return int(exited.value.code or 0), printed.out, printed.err


def test_kafka_up_and_down_json_say_what_they_did(
        fake_kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def answer(*args: str) -> dict[str, Any]:
        code, out, err = _main(monkeypatch, capsys, "kafka", *args, "--json")
        assert (code, err) == (0, "")
        parsed: dict[str, Any] = json.loads(out)
        return parsed

    node = {"id": 1, "pid": 4242, "bootstrap": "127.0.0.1:19092", "running": True}
    assert answer("up") == {"status": "started", "running": True, "pid": 4242,
                            "bootstrap": "127.0.0.1:19092", "detail": "up (pid 4242)",
                            "nodes": [node]}
    assert fake_kafka.running and fake_kafka.brokers is None
    assert answer("up")["status"] == "already_running"
    assert answer("status") == {"running": True, "pid": 4242, "bootstrap": "127.0.0.1:19092",
                                "detail": "up (pid 4242)", "nodes": [node]}
    assert answer("down") == {"status": "stopped", "running": False, "pid": None,
                              "bootstrap": "127.0.0.1:19092", "detail": "not running",
                              "nodes": [{**node, "pid": None, "running": False}]}
    assert not fake_kafka.running
    assert answer("down")["status"] == "not_running"


def test_kafka_up_brokers_asks_for_a_cluster_of_that_size(
        fake_kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(monkeypatch, capsys, "kafka", "up", "--brokers", "3", "--json")
    assert (code, err, fake_kafka.brokers) == (0, "", 3)
    code, _, err = _main(monkeypatch, capsys, "kafka", "up", "--brokers", "0")
    assert code == 2 and "--brokers" in err


def test_kafka_up_failure_with_json_is_one_line_and_no_stdout(
        fake_kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kafka.fail = "port 9092 is taken by something that is not Kafka"
    code, out, err = _main(monkeypatch, capsys, "kafka", "up", "--json")
    assert (code, out) == (1, "")
    assert err == "error: port 9092 is taken by something that is not Kafka\n"
