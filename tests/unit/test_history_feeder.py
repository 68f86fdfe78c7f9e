"""streams.history.feeder: what the history does with records it cannot keep.

A record that is no attempt record is quarantined with the reason, and the rest of its
batch is kept; a batch whose write keeps failing is tried three times, then record by record
(three times each), so that only the record it fails on is quarantined. `_feed` never
raises: a feeder that did would leave its partitions assigned and unread."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.delivery.models import SUCCESS, AttemptRecord
from streams.history import feeder as feeder_module
from streams.history import upgrade
from streams.history.feeder import HistoryFeeder
from streams.history.table import Attempt
from streams.settings import Settings
from streams.telemetry import metrics

PREFIX = "t."
LOG = TopicPartition(f"{PREFIX}hookstream.delivery-log", 3)


class _Signal:
    def connect(self, receiver: Any) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers,
                          "partition": partition})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _History:
    """Keeps what it is given; raises for any batch holding a webhook in `poison`."""

    def __init__(self, poison: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.poison = poison
        self.calls: list[list[str]] = []

    async def record(self, attempts: list[Attempt], _producer: Any) -> None:
        self.calls.append([a.record.webhook_id for a in attempts])
        if any(a.record.webhook_id in self.poison for a in attempts):
            raise RecursionError("deep")


def _attempt(webhook: str) -> bytes:
    return AttemptRecord("dlv_1", webhook, "ws", "user.added", "evt", 1, SUCCESS, 200, 3,
                         None, 1_700_000_000_000).encode()


def _records(*values: bytes) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(LOG.topic, LOG.partition, offset, 0, 0, b"\xffkey", value, None,
                           len(b"\xffkey"), len(value), ()) for offset, value in enumerate(values)]


def _feed(history: _History, records: list[ConsumerRecord[bytes, bytes]]) -> _Producer:
    settings_ = Settings.from_env({"HOOKSTREAM_TOPIC_PREFIX": PREFIX})
    app = SimpleNamespace(on_partitions_revoked=_Signal(), on_rebalance_complete=_Signal())
    feeder = HistoryFeeder(SimpleNamespace(app=app, settings=settings_),  # type: ignore[arg-type]
                           history)  # type: ignore[arg-type]
    producer = _Producer()
    feeder._producer = producer  # type: ignore[assignment]
    asyncio.run(feeder._feed(LOG, records))
    return producer


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeder_module, "HANDLER_BACKOFF_S", (0.0, 0.0))


def _invalid(producer: _Producer) -> list[tuple[bytes, bytes, bytes]]:
    """(source offset, error, value) of each quarantined copy."""
    out = []
    for sent in producer.sent:
        assert sent["topic"] == f"{PREFIX}hookstream.invalid"
        headers = dict(sent["headers"])
        assert headers["hookstream-source-topic"] == LOG.topic.encode()
        assert headers["hookstream-source-partition"] == b"3"
        assert sent["key"] == b"\xffkey"  # kept byte for byte
        out.append((headers["hookstream-source-offset"], headers["hookstream-error"],
                    sent["value"]))
    return out


def test_what_decodes_is_kept_and_the_rest_is_quarantined_with_the_reason() -> None:
    history = _History()
    before = metrics.INVALID.labels(topic="hookstream.delivery-log")._value.get()
    producer = _feed(history, _records(_attempt("wh_1"), b"\x00junk", _attempt("wh_2"), b""))
    assert history.calls == [["wh_1", "wh_2"]]
    quarantined = _invalid(producer)
    assert [(offset, value) for offset, _, value in quarantined] == [(b"1", b"\x00junk"),
                                                                     (b"3", b"")]
    assert all(error.startswith(b"invalid attempt record: ") for _, error, _ in quarantined)
    assert metrics.INVALID.labels(topic="hookstream.delivery-log")._value.get() == before + 2


def test_a_batch_that_keeps_failing_is_written_record_by_record() -> None:
    history = _History(poison={"wh_bad"})
    before = metrics.HANDLER_FAILURES.labels(stage="history")._value.get()
    producer = _feed(history, _records(_attempt("wh_1"), _attempt("wh_bad"), _attempt("wh_2")))
    whole = ["wh_1", "wh_bad", "wh_2"]
    assert history.calls == [whole] * 3 + [["wh_1"]] + [["wh_bad"]] * 3 + [["wh_2"]]
    ((offset, error, _),) = _invalid(producer)
    assert offset == b"1"
    assert error == b"handler failed after 3 attempts: RecursionError: deep"
    assert metrics.HANDLER_FAILURES.labels(stage="history")._value.get() == before + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(["a", "b"]).map(_attempt)),
                max_size=12))
def test_any_bytes_are_kept_or_quarantined_never_raised(values: list[bytes]) -> None:
    history = _History()
    producer = _feed(history, _records(*values))
    kept = sum(len(call) for call in history.calls)
    assert kept + len(producer.sent) == len(values)


class _Admin:
    """Answers an OffsetFetch as aiokafka does: the partitions the broker named, no more."""

    def __init__(self, answer: dict[TopicPartition, int]) -> None:
        self.answer = answer

    async def list_consumer_group_offsets(self, _group: str,
                                          partitions: list[TopicPartition]) -> dict[Any, Any]:
        return {tp: SimpleNamespace(offset=self.answer[tp]) for tp in partitions
                if tp in self.answer}


def test_a_group_answer_without_a_partition_asked_for_is_not_taken_for_no_offset() -> None:
    """A coordinator still loading answers with no partitions (a group-level error aiokafka
    does not read): taken as "no offset", the feeder would record the partition again."""
    other = TopicPartition(LOG.topic, 4)
    with pytest.raises(upgrade.OffsetsUnknown):
        asyncio.run(upgrade._committed(_Admin({}), "g", [LOG]))  # type: ignore[arg-type]
    with pytest.raises(upgrade.OffsetsUnknown):
        asyncio.run(upgrade._committed(_Admin({LOG: 7}), "g",  # type: ignore[arg-type]
                                       [LOG, other]))
    assert asyncio.run(upgrade._committed(_Admin({LOG: 7, other: -1}), "g",  # type: ignore[arg-type]
                                          [LOG, other])) == {LOG: 7, other: -1}
