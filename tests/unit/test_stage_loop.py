"""streams.pipeline.stage.Stage, its loop driven on the in-memory broker (streams.pipeline.local).

Time is virtual: the event loop's clock jumps to the next timer whenever nothing is ready to
run (VirtualClockLoop), so the stage's polls, commit interval, holds, handler backoffs and
drain timeout cost no wall-clock time and happen in the same order on every run. A test
that waits for something to happen waits for the event itself (`Probe.until`); a test that
lets virtual seconds pass does so to show what does *not* happen in them (a paused partition
read, a commit moving), or that a timed promise is kept (a commit within its interval).
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
from collections import defaultdict
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any, TypeVar

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, ProducerClosed, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.topics import INVALID
from streams.pipeline.clients import ConsumerFactory, Record
from streams.pipeline.local import CREATE_TIME, LOG_APPEND_TIME, LocalBroker, LocalConsumer
from streams.pipeline.records import Origin, Produce
from streams.pipeline.stage import (
    COMMIT_INTERVAL_S,
    HANDLER_ATTEMPTS,
    HANDLER_BACKOFF_S,
    MAX_IN_FLIGHT_PER_PARTITION,
    Stage,
    handler_failure,
)
from streams.settings import Settings
from streams.telemetry import metrics

T = TypeVar("T")

SETTINGS = Settings(topic_prefix="t.")
TOPIC = "t.input"
GROUP = "t.hookstream-probe"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
DRAIN_S = 5.0
#: The stage polls with a 200 ms timeout and commits after a poll once the interval passed.
COMMIT_WITHIN_S = COMMIT_INTERVAL_S + 0.25
#: Records one poll returns at most (the stage's max_records).
POLL_RECORDS = 500


# -- virtual time ------------------------------------------------------------------------
#: Turns of the event loop without the clock moving before a test is failed as spinning
#: (these tests take a few dozen at most).
SPINNING_TURNS = 10_000


class _JumpingSelector(selectors.DefaultSelector):
    """Never sleeps: with nothing ready, it moves the clock to the loop's next timer."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance
        self._turns = 0
        self.most_turns = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is None:
            raise RuntimeError("deadlock: nothing can run and no timer is set")
        if not ready and timeout:
            self._advance(timeout)
            self._turns = 0
        else:
            # A loop that keeps running without letting time pass (a busy poll) would
            # never reach the virtual time limit: fail it here instead of hanging.
            self._turns += 1
            self.most_turns = max(self.most_turns, self._turns)
            if self._turns > SPINNING_TURNS:
                raise RuntimeError("spinning: the loop keeps running but time never passes")
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self._advance))

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any,
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        """A timer runs with the clock at its time. asyncio runs timers due within its clock
        resolution early; on a clock that moves only when idle, a timer that re-arms itself
        for that sliver (a hold whose record is due a hair later) would run for ever."""
        def at_its_time(*args: Any) -> None:
            self._now = max(self._now, when)
            callback(*args)

        return super().call_at(when, at_its_time, *args, context=context)

    def _advance(self, seconds: float) -> None:
        self._now += seconds


def run(main: Callable[[], Coroutine[Any, Any, T]], limit_s: float = 120.0) -> T:
    """Run `main` in virtual time; a test still waiting after `limit_s` virtual seconds
    fails (in milliseconds of real time) instead of hanging."""
    async def bounded() -> T:
        async with asyncio.timeout(limit_s):
            return await main()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(bounded())


def now() -> float:
    return asyncio.get_running_loop().time()


def broker_clock() -> int:
    """The broker's clock in ms: the loop's virtual one."""
    return int(now() * 1000)


# -- a stage whose handler the test drives -------------------------------------------------
class Probe(Stage):
    """Handles a record by its value: b"ok" at once, b"wait" when the test releases it,
    b"bad" by quarantining it, b"raise" by raising; holds it until the loop time in its
    `due` header."""

    group = "hookstream-probe"

    def __init__(self, broker: LocalBroker, drain_timeout: float = DRAIN_S,
                 consumer_factory: ConsumerFactory | None = None) -> None:
        super().__init__(SETTINGS, [TOPIC], drain_timeout,
                         consumer_factory=consumer_factory or broker.consumer,
                         producer_factory=broker.producer)
        #: (partition, offset) -> loop times the handler was called at.
        self.calls: dict[tuple[int, int], list[float]] = defaultdict(list)
        self.cancelled: list[tuple[int, int]] = []
        self._gates: dict[tuple[int, int], asyncio.Future[list[Produce]]] = {}
        self._called = asyncio.Condition()

    async def handle(self, record: Record, origin: Origin) -> list[Produce]:
        key = (origin.partition, origin.offset)
        self.calls[key].append(now())
        async with self._called:
            self._called.notify_all()
        if record.value == b"bad":
            return [self.quarantine(record, origin, "rejected: bad")]
        if record.value == b"raise":
            raise RuntimeError("boom")
        if record.value == b"wait":
            try:
                # shielded: a cancelled handler leaves its gate for the test to release
                return await asyncio.shield(self._gate(key))
            except asyncio.CancelledError:
                self.cancelled.append(key)
                raise
        return []

    def wait_before(self, tp: TopicPartition, record: Record) -> float:
        due = dict(record.headers).get("due")
        return 0.0 if due is None else max(0.0, float(due) - now())

    def _gate(self, key: tuple[int, int]) -> asyncio.Future[list[Produce]]:
        if key not in self._gates:
            self._gates[key] = asyncio.get_running_loop().create_future()
        return self._gates[key]

    def release(self, partition: int, offset: int) -> None:
        self._gate((partition, offset)).set_result([])

    def started(self, partition: int) -> set[int]:
        return {offset for p, offset in self.calls if p == partition}

    async def until(self, condition: Callable[[], bool]) -> None:
        """Returns once `condition` holds, checked whenever the handler is called."""
        async with self._called:
            await self._called.wait_for(condition)


def _broker(partitions: int = 2) -> LocalBroker:
    broker = LocalBroker(clock=broker_clock)
    broker.create_topic(TOPIC, partitions)
    broker.create_topic(SETTINGS.topic(INVALID), 1)
    return broker


def _consumer_of(broker: LocalBroker) -> LocalConsumer:
    (consumer,) = broker.members(GROUP)
    return consumer


# -- the stage ---------------------------------------------------------------------------
def test_a_partition_pauses_at_its_in_flight_limit_and_resumes_below_half() -> None:
    assert MAX_IN_FLIGHT_PER_PARTITION % POLL_RECORDS == 0  # so the limit falls on a poll

    async def main() -> None:
        broker = _broker()
        for _ in range(MAX_IN_FLIGHT_PER_PARTITION + 200):
            broker.append(TOPIC, b"wait", partition=0)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION)
        await asyncio.sleep(5)  # 25 polls
        assert len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION
        assert _consumer_of(broker).paused() == {P0}

        broker.append(TOPIC, b"ok", partition=1)  # the other partition flows meanwhile
        await probe.until(lambda: (1, 0) in probe.calls)

        half = MAX_IN_FLIGHT_PER_PARTITION // 2
        for offset in range(half):  # half still in flight: still paused
            probe.release(0, offset)
        await asyncio.sleep(5)
        assert len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION
        assert _consumer_of(broker).paused() == {P0}

        probe.release(0, half)  # below half: resumed, the rest is read
        await probe.until(lambda: len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION + 200)
        assert _consumer_of(broker).paused() == set()
        await probe.stop()

    run(main)


def test_the_limit_holds_when_it_falls_inside_a_poll_and_the_rest_is_read_later() -> None:
    """900 in flight, then a poll of 500: 100 are started, the other 400 wait unread (not
    started beyond the limit) and are read once the partition resumes: none is lost."""
    extra = POLL_RECORDS

    async def main() -> None:
        broker = _broker()
        before = MAX_IN_FLIGHT_PER_PARTITION - POLL_RECORDS // 5
        for _ in range(before):
            broker.append(TOPIC, b"wait", partition=0)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: len(probe.started(0)) == before)
        for _ in range(extra):
            broker.append(TOPIC, b"wait", partition=0)
        await probe.until(lambda: len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION)
        await asyncio.sleep(5)  # 25 polls
        assert len(probe.started(0)) == MAX_IN_FLIGHT_PER_PARTITION
        assert _consumer_of(broker).paused() == {P0}

        for offset in range(MAX_IN_FLIGHT_PER_PARTITION):
            probe.release(0, offset)
        await probe.until(lambda: len(probe.started(0)) == before + extra)
        assert probe.started(0) == set(range(before + extra))
        for offset in range(MAX_IN_FLIGHT_PER_PARTITION, before + extra):
            probe.release(0, offset)
        await probe.stop()
        assert broker.committed(GROUP, P0) == before + extra

    run(main)


def test_a_partition_is_held_until_its_head_is_due_and_read_again_from_it() -> None:
    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"ok", partition=0, headers=[("due", b"10")])
        broker.append(TOPIC, b"ok", partition=0)  # due now, but behind the held one
        broker.append(TOPIC, b"ok", partition=1)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: (1, 0) in probe.calls)
        await asyncio.sleep(5 - now())
        assert probe.started(0) == set()
        assert _consumer_of(broker).paused() == {P0}

        broker.append(TOPIC, b"ok", partition=1)  # other partitions flow meanwhile
        await probe.until(lambda: (1, 1) in probe.calls)
        assert now() < 5.5

        await asyncio.sleep(9.9 - now())
        assert probe.started(0) == set()
        await probe.until(lambda: (0, 1) in probe.calls)
        (head,), (next_,) = probe.calls[(0, 0)], probe.calls[(0, 1)]
        assert 10.0 <= head <= next_ < 10.3  # when due, from the held record on
        assert _consumer_of(broker).paused() == set()
        await probe.stop()

    run(main)


def test_only_contiguous_done_offsets_are_committed() -> None:
    async def main() -> None:
        broker = _broker()
        for _ in range(3):
            broker.append(TOPIC, b"wait", partition=0)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: probe.started(0) == {0, 1, 2})
        probe.release(0, 0)
        probe.release(0, 2)  # a later, faster one
        await asyncio.sleep(COMMIT_WITHIN_S)
        assert broker.committed(GROUP, P0) == 1
        await asyncio.sleep(3 * COMMIT_INTERVAL_S)  # three more commits
        assert broker.committed(GROUP, P0) == 1  # 1, slow, holds it back
        probe.release(0, 1)
        await asyncio.sleep(COMMIT_WITHIN_S)
        assert broker.committed(GROUP, P0) == 3
        await probe.stop()

    run(main)


class _Listener:
    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        return None


def test_a_revoked_partition_drains_commits_and_is_forgotten() -> None:
    async def main() -> None:
        broker = _broker()
        for _ in range(3):
            broker.append(TOPIC, b"wait", partition=1)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: probe.started(1) == {0, 1, 2})
        probe.release(1, 0)

        other = broker.consumer(SETTINGS, GROUP, DRAIN_S)
        other.subscribe([TOPIC], listener=_Listener())
        began = now()
        joining = asyncio.create_task(other.start())  # partition 1 moves to it
        await asyncio.sleep(1)
        assert not joining.done()  # the rebalance waits for the drain
        probe.release(1, 1)  # finishes within the drain timeout
        await joining
        assert now() - began == pytest.approx(DRAIN_S)  # 2 never finished: given up at it
        assert probe.cancelled == [(1, 2)]
        assert broker.committed(GROUP, P1) == 2

        assert (probe.assigned_count(), other.assignment()) == (1, {P1})
        assert P1 not in probe._trackers and P1 not in probe._tasks  # forgotten
        batch = await other.getmany(timeout_ms=0)
        assert [r.offset for r in batch[P1]] == [2]  # the new owner repeats what was not done
        await other.stop()
        await probe.stop()

    run(main)


class _SlowAnswer(LocalConsumer):
    """A member whose next commit, once stored, is answered only when `answer` is set: a
    round trip long enough for a rebalance to run meanwhile."""

    def __init__(self, broker: LocalBroker, group_id: str) -> None:
        super().__init__(broker, group_id)
        self.slow_next = False
        self.waiting = asyncio.Event()
        self.answer = asyncio.Event()
        #: Each commit's `background`, in order.
        self.backgrounds: list[bool] = []

    async def commit(self, offsets: Mapping[TopicPartition, int], *,
                     background: bool = False) -> None:
        self.backgrounds.append(background)
        slow, self.slow_next = self.slow_next, False
        await super().commit(offsets, background=background)
        if slow:
            self.waiting.set()
            await self.answer.wait()


async def _commit_left_unanswered(broker: LocalBroker,
                                  partition: int) -> tuple[Probe, _SlowAnswer]:
    """A started probe on a _SlowAnswer member, once the loop's commit after handling
    `partition`@0 is stored and its answer held back (until `answer` is set)."""
    members: list[_SlowAnswer] = []

    def slow_answers(settings: Settings, group_id: str, drain_timeout: float) -> _SlowAnswer:
        members.append(_SlowAnswer(broker, group_id))
        return members[-1]

    probe = Probe(broker, consumer_factory=slow_answers)
    await probe.start()
    (consumer,) = members
    await probe.until(lambda: (partition, 0) in probe.calls)
    consumer.slow_next = True
    await consumer.waiting.wait()
    return probe, consumer


def test_a_partition_revoked_while_its_commit_is_answered_does_not_stop_the_loop() -> None:
    """The loop's commit of P1 is stored, and while its answer is on the way P1 is revoked,
    drained and forgotten: when the answer comes there is no tracker left to mark, and the
    loop goes on (marking it regardless would raise KeyError and end the loop)."""
    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"ok", partition=1)
        probe, consumer = await _commit_left_unanswered(broker, partition=1)
        assert broker.committed(GROUP, P1) == 1

        other = _member(broker)
        await other.start()  # P1 moves to it: drained, committed, forgotten meanwhile
        assert other.assignment() == {P1} and P1 not in probe._trackers
        consumer.answer.set()

        broker.append(TOPIC, b"ok", partition=0)  # the loop still reads its partition
        await probe.until(lambda: (0, 0) in probe.calls)
        assert P1 not in probe._trackers
        await other.stop()
        await probe.stop()

    run(main)


def test_records_are_read_and_handled_while_a_commit_is_answered() -> None:
    """The loop's commit is on its way (stored, not yet answered): records that arrive
    meanwhile are read and handled, and the next commit follows once it is answered. A
    loop that awaited its commit read nothing until the answer came (on Kafka 4, 8-41 ms
    of every second: its group coordinator lingers 5 ms to batch its writes)."""
    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"ok", partition=0)
        probe, consumer = await _commit_left_unanswered(broker, partition=0)
        assert broker.committed(GROUP, P0) == 1

        broker.append(TOPIC, b"ok", partition=0)
        broker.append(TOPIC, b"ok", partition=1)
        await probe.until(lambda: {(0, 1), (1, 0)} <= set(probe.calls))
        # Handled while the loop's commit still awaited its answer.
        assert probe._committing is not None and not probe._committing.done()
        consumer.answer.set()
        await asyncio.sleep(COMMIT_WITHIN_S)
        assert (broker.committed(GROUP, P0), broker.committed(GROUP, P1)) == (2, 1)
        await probe.stop()

    run(main)


def test_a_stop_does_not_wait_for_the_loops_background_commit_and_its_drain_commits() -> None:
    """The loop's periodic commit goes in the background: the stages' consumer answers it
    through a later poll (streams.kafka.asyncconsumer), and none follows a stop. So a stop
    gives up that wait (awaiting it, a stop waited for the answer's 30 s bound; here, for
    ever), and its drain commits what was handled since, in the foreground."""
    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"ok", partition=0)
        probe, consumer = await _commit_left_unanswered(broker, partition=0)
        broker.append(TOPIC, b"ok", partition=0)
        await probe.until(lambda: (0, 1) in probe.calls)
        await probe.stop()
        assert broker.committed(GROUP, P0) == 2
        *loops, drain = consumer.backgrounds
        assert loops and all(loops) and not drain

    run(main)


def test_rejected_and_always_failing_records_are_quarantined_and_passed() -> None:
    before = metrics.REGISTRY.get_sample_value(
        "hookstream_handler_failures_total", {"stage": "probe"}) or 0.0

    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"bad", key=b"k0", partition=0)
        broker.append(TOPIC, b"raise", key=b"k1", partition=0)
        broker.append(TOPIC, b"ok", partition=0)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: len(probe.calls[(0, 1)]) == HANDLER_ATTEMPTS)
        first = probe.calls[(0, 1)][0]
        tries = [t - first for t in probe.calls[(0, 1)]]
        assert tries == pytest.approx([0, HANDLER_BACKOFF_S[0], sum(HANDLER_BACKOFF_S)])
        await asyncio.sleep(COMMIT_WITHIN_S)
        assert len(probe.calls[(0, 1)]) == HANDLER_ATTEMPTS  # no more tries
        assert broker.committed(GROUP, P0) == 3  # the offset moved past both

        copies = broker.records(SETTINGS.topic(INVALID))
        assert [(c.key, c.value) for c in copies] == [(b"k0", b"bad"), (b"k1", b"raise")]
        assert [dict(c.headers) for c in copies] == [
            {"hookstream-source-topic": TOPIC.encode(), "hookstream-source-partition": b"0",
             "hookstream-source-offset": str(offset).encode(),
             "hookstream-error": reason.encode()}
            for offset, reason in [
                (0, "rejected: bad"),
                (1, handler_failure(HANDLER_ATTEMPTS, RuntimeError("boom")))]]
        await probe.stop()

    run(main)
    after = metrics.REGISTRY.get_sample_value(
        "hookstream_handler_failures_total", {"stage": "probe"})
    assert after == before + 1


def test_stop_lets_in_flight_records_finish_and_commits_them() -> None:
    async def main() -> None:
        broker = _broker()
        broker.append(TOPIC, b"wait", partition=0)
        probe = Probe(broker)
        await probe.start()
        await probe.until(lambda: probe.started(0) == {0})
        stopping = asyncio.create_task(probe.stop())
        await asyncio.sleep(1)
        probe.release(0, 0)
        await stopping
        assert broker.committed(GROUP, P0) == 1
        assert broker.members(GROUP) == []

    run(main)


# -- the local backend keeps the rules the stage relies on ---------------------------------
def _member(broker: LocalBroker, group: str = GROUP) -> LocalConsumer:
    consumer = broker.consumer(SETTINGS, group, DRAIN_S)
    consumer.subscribe([TOPIC], listener=_Listener())
    return consumer


def test_local_seek_pause_and_commit_behave_as_kafka() -> None:
    async def main() -> None:
        broker = _broker()
        for n in range(4):
            broker.append(TOPIC, str(n).encode(), partition=0)
        consumer = _member(broker)
        await consumer.start()
        batch = await consumer.getmany(timeout_ms=0, max_records=3)
        assert [r.value for r in batch[P0]] == [b"0", b"1", b"2"]
        consumer.seek(P0, 1)
        consumer.pause(P0)
        assert await consumer.getmany(timeout_ms=1000) == {}  # paused: nothing
        assert now() == pytest.approx(1.0)  # after waiting its timeout
        consumer.resume(P0)
        batch = await consumer.getmany(timeout_ms=0)
        assert [r.offset for r in batch[P0]] == [1, 2, 3]  # from where it was sought

        await consumer.commit({P0: 2})
        assert broker.committed(GROUP, P0) == 2
        await consumer.stop()
        again = _member(broker)
        await again.start()  # a new assignment starts at the committed offset
        assert again.position(P0) == 2
        with pytest.raises(CommitFailedError):
            await again.commit({TopicPartition(TOPIC, 9): 1})
        await again.stop()

    run(main)


def test_local_getmany_wakes_for_an_append_and_waits_out_a_rebalance() -> None:
    async def main() -> None:
        broker = _broker()
        revoking = asyncio.Event()
        revoking.set()

        class Slow(_Listener):
            async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
                await revoking.wait()

        consumer = broker.consumer(SETTINGS, GROUP, DRAIN_S)
        consumer.subscribe([TOPIC], listener=Slow())
        await consumer.start()
        polling = asyncio.create_task(consumer.getmany(timeout_ms=10_000))
        await asyncio.sleep(2)
        broker.append(TOPIC, b"x", partition=1)
        batch = await polling
        assert list(batch) == [P1] and now() == pytest.approx(2.0)  # not at its timeout

        revoking.clear()
        joining = asyncio.create_task(_member(broker).start())
        await asyncio.sleep(0)  # the rebalance begins: its revocation waits
        polling = asyncio.create_task(consumer.getmany(timeout_ms=0))
        broker.append(TOPIC, b"y", partition=0)
        await asyncio.sleep(3)
        assert not polling.done()  # no records while the group rebalances
        revoking.set()
        await joining
        assert consumer.assignment() == {P0}
        assert await polling == {P0: broker.records(TOPIC, 0)}

    run(main)


def test_local_partitions_keys_as_kafka_and_stamps_append_time() -> None:
    async def main() -> None:
        broker = LocalBroker(clock=lambda: 1234)
        broker.create_topic("keyed", 6)
        broker.create_topic("retry", 1, log_append_time=True)
        for key in (b"wh_1", b"wh_2", b"ws_9", b""):
            record = broker.append("keyed", b"v", key=key, timestamp=7)
            assert record.partition == DefaultPartitioner()(key, list(range(6)), [])
            assert (record.timestamp, record.timestamp_type) == (7, CREATE_TIME)
        producer = broker.producer(SETTINGS)
        with pytest.raises(ProducerClosed):
            await producer.send_and_wait("retry", b"v")
        await producer.start()
        await producer.send_and_wait("retry", b"v", key=b"k", headers=[("h", b"1")],
                                     timestamp_ms=7)
        (record,) = broker.records("retry")
        assert (record.timestamp, record.timestamp_type) == (1234, LOG_APPEND_TIME)
        assert (record.key, record.headers) == (b"k", (("h", b"1"),))
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_and_wait("missing", b"v")

    run(main)
