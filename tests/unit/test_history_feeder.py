"""streams.history.feeder, driven through its seams (a reader of the log, a producer, the
start-offset lookup, faust's signals) without Kafka.

What it follows: faust's assignment of the history table, from where each partition
starts, and a revocation waits for the batch under way, which lands and is committed
before the partitions are given up. What it does with records it cannot keep: a record
that is no attempt record is quarantined with the reason and the rest of its batch is
kept; a batch whose write keeps failing is tried three times, then record by record (three
times each), so that only the record it fails on is quarantined. Nothing raises out of its
loop: a feeder that stopped would leave its partitions assigned and unread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
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
SETTINGS = Settings.from_env({"HOOKSTREAM_TOPIC_PREFIX": PREFIX})
LOG = TopicPartition(f"{PREFIX}hookstream.delivery-log", 3)
OTHER = TopicPartition(LOG.topic, 4)
CHANGELOG = f"{PREFIX}hookstream.delivery-history"

Record = ConsumerRecord[bytes, bytes]


def _attempt(webhook: str) -> bytes:
    return AttemptRecord("dlv_1", webhook, "ws", "user.added", "evt", 1, SUCCESS, 200, 3,
                         None, 1_700_000_000_000).encode()


def _records(*values: bytes, tp: TopicPartition = LOG) -> list[Record]:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"\xffkey", value, None,
                           len(b"\xffkey"), len(value), ()) for offset, value in enumerate(values)]


# -- the seams -----------------------------------------------------------------------------
class _Signal:
    def __init__(self) -> None:
        self.receivers: list[Callable[..., Awaitable[None]]] = []

    def connect(self, receiver: Callable[..., Awaitable[None]]) -> None:
        self.receivers.append(receiver)

    async def send(self) -> None:
        for receiver in self.receivers:
            await receiver(None)


class _Faust:
    """faust's app as the feeder sees it: two signals and the table's active partitions."""

    def __init__(self) -> None:
        self.on_partitions_revoked = _Signal()
        self.on_rebalance_complete = _Signal()
        self.actives: set[int] = set()
        self.assignor = SimpleNamespace(assigned_actives=lambda: {
            TopicPartition(CHANGELOG, p) for p in self.actives})

    async def rebalance(self, actives: set[int]) -> None:
        await self.on_partitions_revoked.send()
        self.actives = actives
        await self.on_rebalance_complete.send()


class _Reader:
    """The log as a consumer assigned by hand reads it (feeder.LogReader)."""

    def __init__(self, log: Mapping[TopicPartition, list[Record]]) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        #: Offsets whose commit the broker refuses once (the coordinator moving, say).
        self.refuse_once: set[int] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        self.positions = dict(positions)

    def unassign(self) -> None:
        self.positions = {}

    async def getmany(self, *, timeout_ms: int,
                      max_records: int) -> Mapping[TopicPartition, list[Record]]:
        found = {}
        for tp, position in self.positions.items():
            records = self.log.get(tp, [])[position:position + max_records]
            if records:
                found[tp] = records
                self.positions[tp] = position + len(records)
        if not found:
            await asyncio.sleep(timeout_ms / 1000)  # as Kafka: nothing came meanwhile
        return found

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        refused = self.refuse_once & set(offsets.values())
        if refused:
            self.refuse_once -= refused
            raise KafkaError(f"refused: {sorted(refused)}")
        self.committed.update(offsets)

    async def beginning_offsets(
            self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: 0 for tp in partitions}


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers,
                          "partition": partition})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _History:
    """Keeps what it is given; raises for any batch holding a webhook in `poison`; while
    `gate` is set and not open, a write waits there (and says it began: `entered`)."""

    def __init__(self, poison: frozenset[str] = frozenset()) -> None:
        self.poison = poison
        self.calls: list[list[str]] = []
        self.kept: list[str] = []
        self.serving: frozenset[int] = frozenset()
        self.gate: asyncio.Event | None = None
        self.entered: asyncio.Event | None = None

    async def record(self, attempts: list[Attempt], _producer: Any) -> None:
        webhooks = [a.webhook_id for a in attempts]
        self.calls.append(webhooks)
        if self.gate is not None and self.entered is not None:
            self.entered.set()
            await self.gate.wait()
        if any(webhook in self.poison for webhook in webhooks):
            raise RecursionError("deep")
        self.kept.extend(webhooks)


class _Rig:
    """A feeder on fakes; `starts` answers the start-offset lookups (0 by default)."""

    def __init__(self, log: Mapping[TopicPartition, list[Record]],
                 history: _History | None = None,
                 starts: Callable[[list[TopicPartition]],
                                  Awaitable[dict[TopicPartition, int]]] | None = None) -> None:
        self.faust = _Faust()
        self.reader = _Reader(log)
        self.producer = _Producer()
        self.history = history or _History()

        async def from_zero(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return {tp: 0 for tp in tps}

        self.feeder = HistoryFeeder(
            SimpleNamespace(app=self.faust, settings=SETTINGS),  # type: ignore[arg-type]
            self.history,  # type: ignore[arg-type]
            reader_factory=lambda _settings, _group: self.reader,
            producer_factory=lambda _settings: self.producer,  # type: ignore[arg-type,return-value]
            start_offsets=starts or from_zero)

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Wait for a condition the feeder brings about (5 s: a hung loop fails)."""
        deadline = asyncio.get_running_loop().time() + 5
        while not done():
            assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
            await asyncio.sleep(0.001)


def _run(log: Mapping[TopicPartition, list[Record]], history: _History) -> _Rig:
    """Feed `log`'s partition 3 to the end and stop."""
    rig = _Rig(log, history)
    total = len(log[LOG])

    async def main() -> None:
        await rig.feeder.start()
        await rig.faust.rebalance({LOG.partition})
        await rig.until(lambda: rig.reader.committed.get(LOG) == total,
                        "every record kept or quarantined, and committed")
        await rig.feeder.stop()

    asyncio.run(main())
    return rig


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeder_module, "HANDLER_BACKOFF_S", (0.0, 0.0))
    monkeypatch.setattr(feeder_module, "POLL_PAUSE_S", 0.0)
    monkeypatch.setattr(feeder_module, "COMMIT_INTERVAL_S", 0.0)


# -- following faust ----------------------------------------------------------------------
def test_it_reads_the_partitions_faust_gives_it_from_where_each_starts() -> None:
    log = {LOG: _records(*(_attempt(f"wh_3_{n}") for n in range(5))),
           OTHER: _records(*(_attempt(f"wh_4_{n}") for n in range(2)), tp=OTHER)}

    async def starts(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 2 for tp in tps}

    rig = _Rig(log, starts=starts)

    async def main() -> tuple[frozenset[int], int, bool]:
        await rig.feeder.start()
        assert rig.feeder.settled()  # faust gave it nothing yet: nothing to wait for
        await rig.faust.rebalance({LOG.partition})
        await rig.until(lambda: rig.reader.committed.get(LOG) == 5, "offset 5 committed")
        seen = rig.history.serving, rig.feeder.partitions(), rig.feeder.settled()
        await rig.feeder.stop()
        return seen

    assert asyncio.run(main()) == (frozenset({3}), 1, True)
    assert rig.history.kept == ["wh_3_2", "wh_3_3", "wh_3_4"]
    assert OTHER not in rig.reader.committed


def test_a_revocation_waits_for_the_batch_under_way_which_is_committed_first() -> None:
    """Else the next owner would write the same slots again (or this worker would write
    after it began)."""
    history = _History()
    rig = _Rig({LOG: _records(*(_attempt(f"wh_{n}") for n in range(4)))}, history)

    async def main() -> None:
        history.gate, history.entered = asyncio.Event(), asyncio.Event()
        await rig.feeder.start()
        await rig.faust.rebalance({LOG.partition})
        await history.entered.wait()  # the batch is being written
        revoking = asyncio.create_task(rig.faust.on_partitions_revoked.send())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not revoking.done(), "the revocation did not wait for the batch"
        assert rig.reader.committed[LOG] == 0  # its start only, so far
        history.gate.set()
        await revoking
        assert rig.reader.committed[LOG] == 4  # the batch landed, then was committed
        assert rig.reader.positions == {}  # then given up
        assert history.serving == frozenset()
        await rig.feeder.stop()

    asyncio.run(main())
    assert history.kept == ["wh_0", "wh_1", "wh_2", "wh_3"]


def test_a_refused_commit_is_made_again_though_no_record_follows() -> None:
    """The last batch's commit refused (the coordinator moving, say): the partition then
    quiet, its offset is committed at a later interval all the same, not left behind."""
    rig = _Rig({LOG: _records(*(_attempt(f"wh_{n}") for n in range(5)))})
    rig.reader.refuse_once = {5}

    async def main() -> None:
        await rig.feeder.start()
        await rig.faust.rebalance({LOG.partition})
        await rig.until(lambda: not rig.reader.refuse_once, "the commit refused")
        await rig.until(lambda: rig.reader.committed.get(LOG) == 5, "offset 5 committed")
        await rig.feeder.stop()

    asyncio.run(main())


def _follow_until_committed(rig: _Rig, offset: int) -> None:
    """Give the feeder partition 3 and stop once `offset` is committed there."""

    async def main() -> None:
        await rig.feeder.start()
        await rig.faust.rebalance({LOG.partition})
        await rig.until(lambda: rig.reader.committed.get(LOG) == offset,
                        f"offset {offset} committed")
        await rig.feeder.stop()

    asyncio.run(main())


def test_a_lookup_of_where_to_start_that_never_answers_is_asked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request lost on its way (no answer, no error): the partitions are not left unread
    for good."""
    monkeypatch.setattr(feeder_module, "START_LOOKUP_S", 0.01)
    asked: list[list[TopicPartition]] = []

    async def starts(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        asked.append(tps)
        if len(asked) == 1:
            await asyncio.Event().wait()  # never answered
        return {tp: 0 for tp in tps}

    rig = _Rig({LOG: _records(_attempt("wh_0"), _attempt("wh_1"))}, starts=starts)

    _follow_until_committed(rig, 2)
    assert asked == [[LOG], [LOG]]


def test_where_to_start_is_asked_again_until_it_is_known() -> None:
    asked: list[list[TopicPartition]] = []

    async def starts(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        asked.append(tps)
        if len(asked) < 3:
            raise upgrade.OffsetsUnknown("the coordinator is loading")
        return {tp: 1 for tp in tps}

    rig = _Rig({LOG: _records(_attempt("wh_a"), _attempt("wh_b"))}, starts=starts)

    _follow_until_committed(rig, 2)
    assert asked == [[LOG]] * 3
    assert rig.history.kept == ["wh_b"]


def test_a_change_while_starts_are_looked_up_is_followed_not_overtaken() -> None:
    """faust moved partition 3 away and gave 4 while 3's start was asked for: 3's answer,
    coming last, must not make the feeder read 3."""
    asking, answer = asyncio.Event(), asyncio.Event()

    async def starts(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if tps == [LOG]:
            asking.set()
            await answer.wait()
        return {tp: 0 for tp in tps}

    log = {LOG: _records(_attempt("wh_3")), OTHER: _records(_attempt("wh_4"), tp=OTHER)}
    rig = _Rig(log, starts=starts)

    async def main() -> None:
        await rig.feeder.start()
        await rig.faust.rebalance({LOG.partition})
        await asking.wait()  # the loop is asking where 3 starts
        await rig.faust.rebalance({OTHER.partition})
        answer.set()
        await rig.until(lambda: rig.reader.committed.get(OTHER) == 1, "4 read")
        assert rig.history.serving == frozenset({OTHER.partition})
        assert rig.feeder.settled()
        await rig.feeder.stop()

    asyncio.run(main())
    assert rig.history.kept == ["wh_4"]
    assert LOG not in rig.reader.committed


# -- what it cannot keep ------------------------------------------------------------------
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
    before = metrics.INVALID.labels(topic="hookstream.delivery-log")._value.get()
    rig = _run({LOG: _records(_attempt("wh_1"), b"\x00junk", _attempt("wh_2"), b"")},
               _History())
    assert rig.history.calls == [["wh_1", "wh_2"]]
    quarantined = _invalid(rig.producer)
    assert [(offset, value) for offset, _, value in quarantined] == [(b"1", b"\x00junk"),
                                                                     (b"3", b"")]
    assert all(error.startswith(b"invalid attempt record: ") for _, error, _ in quarantined)
    assert metrics.INVALID.labels(topic="hookstream.delivery-log")._value.get() == before + 2


def test_a_batch_that_keeps_failing_is_written_record_by_record() -> None:
    before = metrics.HANDLER_FAILURES.labels(stage="history")._value.get()
    rig = _run({LOG: _records(_attempt("wh_1"), _attempt("wh_bad"), _attempt("wh_2"))},
               _History(poison=frozenset({"wh_bad"})))
    whole = ["wh_1", "wh_bad", "wh_2"]
    assert rig.history.calls == [whole] * 3 + [["wh_1"]] + [["wh_bad"]] * 3 + [["wh_2"]]
    assert rig.history.kept == ["wh_1", "wh_2"]
    ((offset, error, _),) = _invalid(rig.producer)
    assert offset == b"1"
    assert error == b"handler failed after 3 attempts: RecursionError: deep"
    assert metrics.HANDLER_FAILURES.labels(stage="history")._value.get() == before + 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(["a", "b"]).map(_attempt)),
                max_size=12))
def test_any_bytes_are_kept_or_quarantined_never_raised(values: list[bytes]) -> None:
    rig = _run({LOG: _records(*values)}, _History())
    assert len(rig.history.kept) + len(rig.producer.sent) == len(values)


# -- where a partition starts (streams.history.upgrade) -----------------------------------
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
    with pytest.raises(upgrade.OffsetsUnknown):
        asyncio.run(upgrade._committed(_Admin({}), "g", [LOG]))  # type: ignore[arg-type]
    with pytest.raises(upgrade.OffsetsUnknown):
        asyncio.run(upgrade._committed(_Admin({LOG: 7}), "g",  # type: ignore[arg-type]
                                       [LOG, OTHER]))
    assert asyncio.run(upgrade._committed(_Admin({LOG: 7, OTHER: -1}), "g",  # type: ignore[arg-type]
                                          [LOG, OTHER])) == {LOG: 7, OTHER: -1}
