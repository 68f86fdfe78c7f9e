"""The stages' consumer (streams.pipeline.clients.kafka_consumer, on librdkafka:
streams.kafka.asyncconsumer) on the real broker.

What a stage relies on, each checked here: a member settles in one generation, two
started together within two; a member whose partitions are revoked commits inside the
rebalance, and the next owner starts there; a paused partition yields nothing until
resumed, then from where it was sought; what the loop asks while a `getmany` waits
(a resume, a commit) is made then, not after the poll's timeout (confluent-kafka lets one
call at a time into a client); a background commit holds no poll; and a `getmany`
returns what is there without waiting for a full batch. The same adapter assigned by hand
(the history feeder's reader) reads from the offsets given, in no group's membership.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka import TopicPartition as RdPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.history.feeder import kafka_reader
from streams.kafka.asyncconsumer import AsyncConsumer, CommitFailed
from streams.pipeline.clients import Consumer, Record, kafka_consumer
from streams.settings import Settings
from tests.support.kafka import read_to_end

PARTITIONS = 6
#: A bound on waits that end in milliseconds when things work: it only turns a hang
#: into a failure.
HANG_S = 30.0


def _topic(bootstrap: str, config: dict[str, str] | None = None) -> str:
    name = f"test-stageconsumer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1, config=config or {})])[name].result(
        timeout=30)
    return name


def _produce(bootstrap: str, topic: str, per_partition: int, tag: str = "r",
             headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(PARTITIONS):
        for n in range(per_partition):
            producer.produce(topic, value=f"{tag}{partition}-{n}".encode(),
                             key=f"k{n}".encode(), partition=partition, headers=headers)
    assert producer.flush(30) == 0


class _Listener:
    """Records each callback; on a revoke, commits what `read` says was read (the stage's
    drain does the same through the consumer it is handed)."""

    def __init__(self) -> None:
        self.consumer: Consumer | None = None
        self.latest: set[TopicPartition] = set()
        self.assignments = 0
        self.revokes = 0
        self.read: dict[TopicPartition, int] = {}
        #: What each revoke committed, in order.
        self.committed_on_revoke: list[dict[TopicPartition, int]] = []

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.revokes += 1
        offsets = {tp: self.read[tp] for tp in revoked if tp in self.read}
        if offsets and self.consumer is not None:
            await self.consumer.commit(offsets)
            self.committed_on_revoke.append(offsets)
        self.latest = set()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.assignments += 1
        self.latest = set(assigned)

    def took(self, batches: Mapping[TopicPartition, Sequence[Record]]) -> None:
        for tp, records in batches.items():
            self.read[tp] = records[-1].offset + 1


async def _members(bootstrap: str, topic: str, group: str,
                   count: int) -> tuple[list[Consumer], list[_Listener]]:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    consumers = [kafka_consumer(settings, group, 5.0) for _ in range(count)]
    listeners = [_Listener() for _ in consumers]
    for consumer, listener in zip(consumers, listeners, strict=True):
        listener.consumer = consumer
        consumer.subscribe([topic], listener=listener)
    await asyncio.gather(*(consumer.start() for consumer in consumers))
    return consumers, listeners


async def _poll_until(consumers: list[Consumer], listeners: list[_Listener],
                      done: Callable[[], object], what: str) -> list[list[Record]]:
    """Poll every member until `done()`; each member's records, in order read."""
    got: list[list[Record]] = [[] for _ in consumers]
    deadline = asyncio.get_running_loop().time() + 60
    while not done():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} in 60 s"
        batches = await asyncio.gather(*(c.getmany(timeout_ms=200, max_records=100)
                                         for c in consumers))
        for n, batch in enumerate(batches):
            listeners[n].took(batch)
            got[n].extend(r for records in batch.values() for r in records)
    return got


async def _in_poll(consumer: Consumer) -> None:
    """Returns once the consumer's poller is in (or at) librdkafka's `poll`, past what
    was asked before: what is asked now waits for a slice of that poll."""
    assert isinstance(consumer, AsyncConsumer)
    source, first = inspect.getsourcelines(AsyncConsumer._poll)
    line = first + next(n for n, text in enumerate(source) if "consumer.poll(" in text)
    deadline = asyncio.get_running_loop().time() + HANG_S
    while True:
        frames = sys._current_frames()
        for thread in threading.enumerate():
            frame = frames.get(thread.ident or -1)
            if (thread.name.startswith("poll-") and frame is not None
                    and frame.f_code is AsyncConsumer._poll.__code__
                    and frame.f_lineno == line):
                return
        assert asyncio.get_running_loop().time() < deadline, "the poller never polled"
        await asyncio.sleep(0.001)


def _group() -> str:
    return f"test-stageconsumer-{uuid.uuid4().hex[:8]}"


def test_the_stages_consumer_is_librdkafkas(kafka_bootstrap: str) -> None:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert isinstance(kafka_consumer(settings, _group(), 5.0), AsyncConsumer)


def test_a_lone_member_is_assigned_every_partition_in_one_generation(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    async def main() -> _Listener:
        consumers, listeners = await _members(kafka_bootstrap, topic, _group(), 1)
        try:
            await _poll_until(consumers, listeners, lambda: listeners[0].latest,
                              "assignment")
            assert consumers[0].assignment() == listeners[0].latest
            return listeners[0]
        finally:
            await consumers[0].stop()

    listener = asyncio.run(main())
    assert listener.latest == set()  # leaving the group revoked them
    assert (listener.assignments, listener.revokes) == (1, 1)


def test_two_members_started_together_split_the_partitions_within_two_generations(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    async def main() -> tuple[list[set[TopicPartition]], list[_Listener]]:
        consumers, listeners = await _members(kafka_bootstrap, topic, _group(), 2)
        try:
            await _poll_until(consumers, listeners,
                              lambda: all(len(ls.latest) == PARTITIONS // 2
                                          for ls in listeners), "stable split")
            return [set(ls.latest) for ls in listeners], listeners
        finally:
            await asyncio.gather(*(consumer.stop() for consumer in consumers))

    shares, listeners = asyncio.run(main())
    assert shares[0] | shares[1] == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    # One generation with the first member alone at most, then one with both.
    assert all(listener.assignments <= 2 for listener in listeners)


def test_a_member_commits_inside_the_rebalance_and_the_next_owner_starts_there(
        kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), _group()
    _produce(kafka_bootstrap, topic, 10, "old")

    async def main() -> tuple[_Listener, list[bytes]]:
        first, listeners = await _members(kafka_bootstrap, topic, group, 1)
        await _poll_until(first, listeners,
                          lambda: sum(listeners[0].read.values()) == 10 * PARTITIONS,
                          "first read")
        # A second member joins: the first's revoke commits what it read, as a drain does.
        [second], [joined] = await _members(kafka_bootstrap, topic, group, 1)
        listeners.append(joined)
        both = [first[0], second]
        try:
            split = await _poll_until(both, listeners,
                                      lambda: all(len(ls.latest) == PARTITIONS // 2
                                                  for ls in listeners), "stable split")
            _produce(kafka_bootstrap, topic, 2, "new")
            got = await _poll_until(both, listeners,
                                    lambda: sum(ls.read.get(tp, 0) for ls in listeners
                                                for tp in ls.latest) == 12 * PARTITIONS,
                                    "the new records")
            return listeners[0], [r.value or b"" for member in split + got for r in member]
        finally:
            await asyncio.gather(*(consumer.stop() for consumer in both))

    first_listener, read_after = asyncio.run(main())
    assert first_listener.committed_on_revoke[0] == {
        TopicPartition(topic, p): 10 for p in range(PARTITIONS)}
    # Nothing read twice (from the rebalance on): each next owner started at the commit.
    assert sorted(read_after) == sorted(f"new{p}-{n}".encode()
                                        for p in range(PARTITIONS) for n in range(2))


def test_a_paused_partition_yields_nothing_until_resumed_then_from_where_it_was_sought(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)
    _produce(kafka_bootstrap, topic, 10)
    p0 = TopicPartition(topic, 0)

    async def main() -> tuple[list[int], list[int]]:  # read of p0 when paused; resumed
        consumers, listeners = await _members(kafka_bootstrap, topic, _group(), 1)
        consumer = consumers[0]
        try:
            await _poll_until(consumers, listeners,
                              lambda: sum(listeners[0].read.values()) == 10 * PARTITIONS,
                              "every record")
            consumer.pause(p0)
            consumer.seek(p0, 3)
            _produce(kafka_bootstrap, topic, 1, "later")
            others = {TopicPartition(topic, p) for p in range(1, PARTITIONS)}
            # Until every other partition's later record came: p0's would have too.
            await _poll_until(consumers, listeners,
                              lambda: all(listeners[0].read.get(tp) == 11 for tp in others),
                              "the other partitions")
            while_paused = [listeners[0].read[p0]]
            # Resumed while a getmany waits: made then, not after its 60 s.
            waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000,
                                                           max_records=100))
            await _in_poll(consumer)
            consumer.resume(p0)
            batch = await asyncio.wait_for(waiting, HANG_S)
            return while_paused, [r.offset for r in batch.get(p0, [])]
        finally:
            await consumer.stop()

    while_paused, resumed = asyncio.run(main())
    assert while_paused == [10]  # nothing of p0 after the pause
    assert resumed == list(range(3, 11))


def test_a_partition_paused_before_a_rebalance_flows_when_assigned_again(
        kafka_bootstrap: str) -> None:
    """The stage forgets its pauses when partitions are revoked (its drain); librdkafka
    keeps an application's pause through a reassignment, so the consumer must not."""
    topic, group = _topic(kafka_bootstrap), _group()
    _produce(kafka_bootstrap, topic, 10)
    p0 = TopicPartition(topic, 0)

    async def main() -> dict[TopicPartition, int]:
        first, listeners = await _members(kafka_bootstrap, topic, group, 1)
        await _poll_until(first, listeners,
                          lambda: sum(listeners[0].read.values()) == 10 * PARTITIONS,
                          "every record")
        first[0].pause(p0)
        # A second member comes and goes: two rebalances, then the first holds all again.
        [second], [joined] = await _members(kafka_bootstrap, topic, group, 1)
        listeners.append(joined)
        try:
            await _poll_until([first[0], second], listeners,
                              lambda: all(len(ls.latest) == PARTITIONS // 2
                                          for ls in listeners), "stable split")
        finally:
            await second.stop()
        try:
            await _poll_until(first, listeners[:1],
                              lambda: len(listeners[0].latest) == PARTITIONS, "everything back")
            _produce(kafka_bootstrap, topic, 1, "later")
            await _poll_until(first, listeners[:1],
                              lambda: all(listeners[0].read.get(TopicPartition(topic, p)) == 11
                                          for p in range(PARTITIONS)), "the later records")
            return dict(listeners[0].read)
        finally:
            await first[0].stop()

    assert asyncio.run(main())[p0] == 11


def test_a_commit_asked_while_a_getmany_waits_is_answered_then(kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), _group()
    _produce(kafka_bootstrap, topic, 1)

    async def main() -> dict[TopicPartition, int]:
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 1)
        consumer = consumers[0]
        try:
            await _poll_until(consumers, listeners,
                              lambda: len(listeners[0].read) == PARTITIONS, "every record")
            waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000,
                                                           max_records=100))
            await _in_poll(consumer)
            await asyncio.wait_for(consumer.commit(listeners[0].read), HANG_S)
            assert not waiting.done()
            waiting.cancel()
            return dict(listeners[0].read)
        finally:
            await consumer.stop()

    committed = asyncio.run(main())
    assert committed == {TopicPartition(topic, p): 1 for p in range(PARTITIONS)}
    assert _stored(kafka_bootstrap, group) == {(p, 1) for p in range(PARTITIONS)}


def _stored(bootstrap: str, group: str) -> set[tuple[int, int]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until answered
    stored = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    return {(tp.partition, tp.offset) for tp in stored.topic_partitions if tp.offset >= 0}


def test_a_background_commit_holds_no_poll_and_is_answered_by_the_next(
        kafka_bootstrap: str) -> None:
    """The stage loop's periodic commit: sent at once, its answer left to a later poll, so
    it never holds the poller (a synchronous commit held every fetched record 8-40 ms)."""
    topic, group = _topic(kafka_bootstrap), _group()
    _produce(kafka_bootstrap, topic, 1)
    everything = {(p, 1) for p in range(PARTITIONS)}

    async def main() -> None:
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 1)
        consumer = consumers[0]
        try:
            await _poll_until(consumers, listeners,
                              lambda: len(listeners[0].read) == PARTITIONS, "every record")
            # Asked with no poll running: the broker stores it, unanswered meanwhile.
            committing = asyncio.create_task(consumer.commit(listeners[0].read,
                                                             background=True))
            deadline = asyncio.get_running_loop().time() + HANG_S
            while await asyncio.to_thread(_stored, kafka_bootstrap, group) != everything:
                assert asyncio.get_running_loop().time() < deadline, "never stored"
            assert not committing.done()
            # The next getmany's poll brings the answer, while it waits for records.
            waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000,
                                                           max_records=100))
            await asyncio.wait_for(committing, HANG_S)
            assert not waiting.done()
            waiting.cancel()
        finally:
            await consumer.stop()

    asyncio.run(main())


def test_background_commits_are_each_answered_and_a_refused_one_raises(
        kafka_bootstrap: str) -> None:
    """Three background commits sent before any poll, each answered as itself when the
    polls come: two stored (the newer last), and one of a partition the topic does not
    have, refused with the broker's reason (not taken for another's answer, not lost)."""
    topic, group = _topic(kafka_bootstrap), _group()
    _produce(kafka_bootstrap, topic, 2)

    async def main() -> None:
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 1)
        consumer = consumers[0]
        try:
            await _poll_until(consumers, listeners,
                              lambda: sum(listeners[0].read.values()) == 2 * PARTITIONS,
                              "every record")
            older = asyncio.create_task(consumer.commit(
                {TopicPartition(topic, p): 1 for p in range(PARTITIONS)}, background=True))
            refused = asyncio.create_task(consumer.commit(
                {TopicPartition(topic, PARTITIONS + 3): 1}, background=True))
            newer = asyncio.create_task(consumer.commit(listeners[0].read, background=True))
            while not (older.done() and refused.done() and newer.done()):
                await asyncio.wait_for(consumer.getmany(timeout_ms=50, max_records=100),
                                       HANG_S)
            await older
            await newer
            with pytest.raises(CommitFailed, match=rf"\[{PARTITIONS + 3}\]"):
                await refused
        finally:
            await consumer.stop()

    asyncio.run(main())
    assert _stored(kafka_bootstrap, group) == {(p, 2) for p in range(PARTITIONS)}


def test_a_getmany_returns_what_is_there_without_waiting_for_a_full_batch(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    async def main() -> list[Record]:
        consumers, listeners = await _members(kafka_bootstrap, topic, _group(), 1)
        try:
            await _poll_until(consumers, listeners, lambda: listeners[0].latest,
                              "assignment")
            _produce(kafka_bootstrap, topic, 1)
            found: list[Record] = []
            while len(found) < PARTITIONS:
                batch = await asyncio.wait_for(
                    consumers[0].getmany(timeout_ms=60_000, max_records=500), HANG_S)
                found.extend(r for records in batch.values() for r in records)
            return found
        finally:
            await consumers[0].stop()

    assert len(asyncio.run(main())) == PARTITIONS


def test_records_carry_what_was_produced_and_the_brokers_timestamp(
        kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, {"message.timestamp.type": "LogAppendTime"})
    _produce(kafka_bootstrap, topic, 2, headers=[("a", b"1"), ("a", b"\xff"), ("b", b"")])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=None, key=None, partition=0)  # a tombstone, no headers
    assert producer.flush(30) == 0
    expected = {(m.partition(), m.offset()): m for m in read_to_end(kafka_bootstrap, topic)}

    async def main() -> dict[tuple[int, int], Record]:
        consumers, listeners = await _members(kafka_bootstrap, topic, _group(), 1)
        try:
            got = await _poll_until(consumers, listeners,
                                    lambda: sum(listeners[0].read.values()) == len(expected),
                                    "every record")
            seen: dict[tuple[int, int], Record] = {}
            for record in got[0]:
                value = record.value or b"?"
                partition = int(value[1:2]) if value[:1] == b"r" else 0
                seen[(partition, record.offset)] = record
            return seen
        finally:
            await consumers[0].stop()

    seen = asyncio.run(main())
    assert seen.keys() == expected.keys()
    for where, record in seen.items():
        message = expected[where]
        assert (record.key, record.value) == (message.key(), message.value())
        assert list(record.headers or ()) == list(message.headers() or ())
        assert record.timestamp == message.timestamp()[1] > 0


def test_a_rolling_upgrade_shares_the_group_with_the_aiokafka_members_before_it(
        kafka_bootstrap: str) -> None:
    """Releases before this one read with aiokafka's range assignor; a worker of each
    release in one group must split the partitions, not refuse each other."""
    topic, group = _topic(kafka_bootstrap), _group()

    async def main() -> tuple[set[TopicPartition], set[TopicPartition]]:
        old = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                               enable_auto_commit=False,
                               partition_assignment_strategy=(RangePartitionAssignor,))
        await old.start()
        consumers, listeners = await _members(kafka_bootstrap, topic, group, 1)
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while not (len(listeners[0].latest) == PARTITIONS // 2
                       and len(old.assignment()) == PARTITIONS // 2):
                assert asyncio.get_running_loop().time() < deadline, "no split in 60 s"
                await asyncio.gather(consumers[0].getmany(timeout_ms=200, max_records=10),
                                     old.getmany(timeout_ms=200, max_records=10))
            return set(listeners[0].latest), set(old.assignment())
        finally:
            await consumers[0].stop()
            await old.stop()

    new_share, old_share = asyncio.run(main())
    assert new_share | old_share == {TopicPartition(topic, p) for p in range(PARTITIONS)}


# -- assigned by hand: the history feeder's reader (streams.history.feeder.kafka_reader) --

def test_a_reader_assigned_by_hand_reads_from_the_offsets_given_and_commits_outside_the_group(
        kafka_bootstrap: str) -> None:
    """It joins no group (so faust's assignment alone says what it reads), reads each
    partition from the offset given, stores its commits in its group, and once given other
    partitions returns nothing more of the ones it gave up, even what was fetched before."""
    topic = _topic(kafka_bootstrap)
    _produce(kafka_bootstrap, topic, 3)
    group = _group()
    first, second, other = (TopicPartition(topic, p) for p in (0, 1, 2))
    # The nastiest beginning: records deleted under the reader's feet.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([RdPartition(topic, 2, 2)]).values():
        future.result(timeout=30)

    async def main() -> tuple[dict[TopicPartition, int], list[str], list[str], str]:
        settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
        reader = kafka_reader(settings, group)
        await reader.start()
        try:
            beginnings = dict(await reader.beginning_offsets([first, second, other]))
            reader.assign({first: 1, second: 0})
            got: list[str] = []
            deadline = asyncio.get_running_loop().time() + HANG_S
            while len(got) < 5:
                assert asyncio.get_running_loop().time() < deadline, f"only {got}"
                batches = await reader.getmany(timeout_ms=200, max_records=100)
                got += [(r.value or b"").decode() for rs in batches.values() for r in rs]
            await reader.commit({first: 3, second: 2})
            # Given up while records of `first` are queued and more keep coming.
            _produce(kafka_bootstrap, topic, 2, tag="s")
            reader.assign({second: 3})
            after: list[str] = []
            while len(after) < 2:
                assert asyncio.get_running_loop().time() < deadline, f"only {after}"
                batches = await reader.getmany(timeout_ms=200, max_records=100)
                after += [(r.value or b"").decode() for rs in batches.values() for r in rs]
            members = admin.describe_consumer_groups([group])[group].result(timeout=30).members
            return beginnings, sorted(got), sorted(after), f"{len(members)} members"
        finally:
            await reader.stop()

    beginnings, got, after, members = asyncio.run(main())
    assert beginnings == {first: 0, second: 0, other: 2}
    assert got == ["r0-1", "r0-2", "r1-0", "r1-1", "r1-2"]
    assert after == ["s1-0", "s1-1"]
    assert members == "0 members"
    stored = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offsets = {(p.topic, p.partition): p.offset for p in stored[group].result(timeout=30)
               .topic_partitions}
    assert offsets == {(topic, 0): 3, (topic, 1): 2}
