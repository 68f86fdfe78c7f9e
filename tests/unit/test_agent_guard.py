"""streams.pipeline.agents.each: what a faust agent does with a record it
cannot handle.

Bad input is quarantined at once; a body that raises anything else is tried three times,
then its record is quarantined with the reason; either way the agent goes on to the next
record and never raises (faust would restart it and drop the record)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from streams.core.schemas import SchemaError
from streams.pipeline import agents
from streams.pipeline.stage import HANDLER_ATTEMPTS
from streams.settings import Settings
from streams.telemetry import metrics


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class _Event:
    message: _Message

    @property
    def value(self) -> bytes:
        return self.message.value

    @property
    def key(self) -> bytes | None:
        return self.message.key


@dataclass
class _Stream:
    items: list[_Event]

    async def events(self) -> AsyncIterator[_Event]:
        for item in self.items:
            yield item


@dataclass
class _Topic:
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **record: Any) -> None:
        self.sent.append(record)


def _events(*values: bytes) -> list[_Event]:
    return [_Event(_Message("p.hookstream.control", 1, offset, b"\xffkey", value))
            for offset, value in enumerate(values)]


def _decode(value: bytes) -> str:
    if value.startswith(b"bad"):
        raise SchemaError("not a record")
    return value.decode()


@pytest.fixture
def invalid(monkeypatch: pytest.MonkeyPatch) -> _Topic:
    monkeypatch.setattr(agents, "HANDLER_BACKOFF_S", (0.0,) * HANDLER_ATTEMPTS)
    return _Topic()


def _failures() -> float:
    value = metrics.REGISTRY.get_sample_value("hookstream_handler_failures_total",
                                              {"stage": "test"})
    return value or 0.0


def _guard(invalid: _Topic) -> agents.Agents:
    app = SimpleNamespace(conf=SimpleNamespace(producer_max_request_size=2_000_000))
    return agents.Agents(app, Settings(topic_prefix="p."), invalid=invalid)  # type: ignore[arg-type]


def _run(invalid: _Topic, values: list[bytes], handler: Any) -> None:
    asyncio.run(_guard(invalid).each(_Stream(_events(*values)), _decode, "thing", handler,
                                     stage="test", rejects=(SchemaError, KeyError)))


def test_records_flow_and_bad_ones_are_quarantined_at_once(invalid: _Topic) -> None:
    handled: list[str] = []

    async def handler(_event: Any, value: str) -> None:
        if value == "rejected":
            raise KeyError("named by the body as bad input")
        handled.append(value)

    _run(invalid, [b"one", b"bad bytes", b"rejected", b"two"], handler)
    assert handled == ["one", "two"]
    assert [dict(r["headers"])["hookstream-source-offset"] for r in invalid.sent] == [b"1", b"2"]
    first, second = (dict(r["headers"])["hookstream-error"] for r in invalid.sent)
    assert first == b"invalid thing: not a record"
    assert second.startswith(b"invalid thing: ")
    assert [(r["key"], r["value"]) for r in invalid.sent] == [
        (b"\xffkey", b"bad bytes"), (b"\xffkey", b"rejected")]


def test_a_passing_fault_is_tried_again_and_nothing_is_quarantined(invalid: _Topic) -> None:
    tries: list[str] = []

    async def handler(_event: Any, value: str) -> None:
        tries.append(value)
        if len(tries) < HANDLER_ATTEMPTS:
            raise ConnectionResetError("for a moment")

    _run(invalid, [b"one"], handler)
    assert tries == ["one"] * HANDLER_ATTEMPTS
    assert invalid.sent == []


def test_a_record_that_keeps_failing_is_quarantined_and_the_agent_goes_on(
        invalid: _Topic) -> None:
    tries: list[str] = []
    before = _failures()

    async def handler(_event: Any, value: str) -> None:
        tries.append(value)
        if value == "poison":
            raise RecursionError("maximum recursion depth exceeded")

    _run(invalid, [b"poison", b"after"], handler)
    assert tries == ["poison"] * HANDLER_ATTEMPTS + ["after"]
    (record,) = invalid.sent
    headers = dict(record["headers"])
    assert headers["hookstream-error"] == (
        b"handler failed after 3 attempts: RecursionError: maximum recursion depth exceeded")
    assert (headers["hookstream-source-topic"], headers["hookstream-source-offset"]) == (
        b"p.hookstream.control", b"0")
    assert _failures() == before + 1


def test_a_decoder_that_raises_something_else_still_quarantines(invalid: _Topic) -> None:
    def decode(_value: bytes) -> str:
        raise RecursionError("deep")

    async def handler(_event: Any, _value: str) -> None:
        raise AssertionError("not reached")

    asyncio.run(_guard(invalid).each(_Stream(_events(b"x", b"y")), decode, "thing",
                                     handler, stage="test"))
    assert [dict(r["headers"])["hookstream-error"] for r in invalid.sent] == [
        b"invalid thing: RecursionError: deep"] * 2
