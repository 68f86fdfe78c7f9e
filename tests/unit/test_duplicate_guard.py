"""The duplicate guard (streams.delivery.guard, streams.delivery.duplicates): a job that
already has an outcome is not POSTed again, whether a crash's re-read or the fan-out made
it again; a replay, a retry and a job whose outcome fell out of the window are.

The worker runs on the in-memory broker with a receiver at httpx's transport seam, in
virtual time (test_stage_loop.run). A "previous run" is what it leaves in the topics:
jobs on hookstream.deliveries that were never committed and outcomes on the delivery log.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import httpx
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streams.delivery.guard import (
    ATTEMPT_HEADER,
    DELIVERY_ID_HEADER,
    JOB_CREATED_HEADER,
    SeenOutcomes,
    instance_key,
    outcome_headers,
    outcome_of,
)
from streams.delivery.models import AttemptRecord, DeliveryJob, Outcome
from streams.delivery.routing import after_attempt
from streams.delivery.stage import DeliveryWorker
from streams.kafka.topics import DELIVERIES, DELIVERY_LOG, RETRY_TOPICS, all_topics
from streams.pipeline.local import LocalBroker, LocalProducer
from streams.pipeline.records import Origin
from streams.settings import Settings
from streams.telemetry import metrics

from .test_delivery_stage import BOX, JOB, SETTINGS, SUB, Receiver, _record, _view
from .test_stage_loop import run

GROUP = f"{SETTINGS.topic_prefix}{DeliveryWorker.group}"


# -- the pure part ----------------------------------------------------------------------
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 4)), max_size=200),
       st.integers(0, 12))
def test_seen_outcomes_is_a_bounded_map_of_the_newest_instances(
        adds: list[tuple[int, int]], capacity: int) -> None:
    """Against a model: the highest attempt of the `capacity` keys first seen last."""
    seen, model = SeenOutcomes(capacity), OrderedDict[int, int]()
    for key, attempt in adds:
        seen.add(key, attempt)
        if capacity:
            model[key] = max(model.get(key, 0), attempt)  # keeps its place
            while len(model) > capacity:
                model.popitem(last=False)
    assert len(seen) == len(model) <= capacity
    for key in range(31):
        for attempt in range(1, 5):
            assert seen.done(key, attempt) == (model.get(key, 0) >= attempt)


@given(st.lists(st.tuples(st.sampled_from([DELIVERY_ID_HEADER, JOB_CREATED_HEADER,
                                          ATTEMPT_HEADER, "other"]),
                          st.binary(max_size=12)), max_size=6))
def test_any_headers_are_read_without_raising(headers: list[tuple[str, bytes]]) -> None:
    found = outcome_of(headers)
    assert found is None or (isinstance(found[0], int) and isinstance(found[1], int))


@given(st.text(min_size=1, max_size=40), st.integers(0, 2**45), st.integers(1, 4))
def test_an_outcomes_headers_name_its_instance(delivery_id: str, created: int,
                                                attempt: int) -> None:
    assert outcome_of(outcome_headers(delivery_id, created, attempt)) == (
        instance_key(delivery_id, created), attempt)
    assert instance_key(delivery_id, created) != instance_key(delivery_id, created + 1)


OUR_IDS = st.binary(min_size=12, max_size=12).map(lambda b: f"dlv_{b.hex()}")
ANY_IDS = OUR_IDS | st.text(min_size=1, max_size=30)
TIMES = st.integers(-(2**45), 2**45)


@given(st.tuples(ANY_IDS, TIMES), st.tuples(ANY_IDS, TIMES))
def test_two_job_instances_never_share_a_key(a: tuple[str, int], b: tuple[str, int]) -> None:
    """A shared key would skip a delivery: packed exactly for our ids, hashed for others."""
    assert (instance_key(*a) == instance_key(*b)) == (a == b)


@given(OUR_IDS, TIMES)
def test_a_near_miss_of_our_id_format_is_not_packed_as_ours(delivery_id: str,
                                                           created: int) -> None:
    """int(x, 16) reads "0_1", " 1" and "+1" too: only exact lowercase hex is packed."""
    for twin in (delivery_id.upper().replace("DLV_", "dlv_"), delivery_id[:-2] + "_" +
                 delivery_id[-1], delivery_id[:4] + " " + delivery_id[5:]):
        if twin != delivery_id:
            assert instance_key(twin, created) != instance_key(delivery_id, created)


def test_every_outcome_routed_carries_its_instance() -> None:
    origin = Origin(SETTINGS.topic(DELIVERIES), 0, 3)
    for code in (200, 503):
        outcome = Outcome(1, 10, code, 5, None if code == 200 else "HTTP 503")
        produced = after_attempt(JOB, outcome, SETTINGS.retry_delays, origin)
        [logged] = [p for p in produced if p.topic == DELIVERY_LOG]
        assert outcome_of(logged.headers) == (instance_key(JOB.delivery_id, JOB.created_at), 1)


# -- the stage ----------------------------------------------------------------------------
def _outcome_record(job: DeliveryJob, status: str = "success") -> tuple[bytes, tuple[
        tuple[str, bytes], ...]]:
    record = AttemptRecord.of(job, Outcome(job.attempt, 1, 200, 5, None), status)
    return record.encode(), outcome_headers(job.delivery_id, job.created_at, job.attempt)


def _job(n: int, **changes: object) -> DeliveryJob:
    return replace(JOB, delivery_id=f"dlv_{n:024x}", event_id=f"evt_{n}", created_at=1000 + n,
                   **changes)  # type: ignore[arg-type]


def _deliver_all(jobs: Iterable[DeliveryJob], *, before: Callable[[LocalBroker], None]
                 = lambda broker: None, settings: Settings = SETTINGS,
                 topic: str = DELIVERIES) -> tuple[Receiver, float]:
    """Put `jobs` on `topic` (all on wh_1's partition), run a worker until each is done
    (committed), and return the receiver and how many jobs the guard skipped."""
    receiver = Receiver(200)
    jobs = list(jobs)

    async def main() -> float:
        broker = LocalBroker()
        broker.create_topics(all_topics(settings))
        before(broker)
        placed = [broker.append(settings.topic(topic), j.encode(), key=b"wh_1") for j in jobs]
        skipped = _skipped()
        worker = DeliveryWorker(settings, _view([SUB]), box=BOX,
                                transport=httpx.MockTransport(receiver),
                                consumer_factory=broker.consumer,
                                producer_factory=broker.producer, tail_factory=broker.tail)
        await worker.start()
        tp = TopicPartition(placed[-1].topic, placed[-1].partition) if placed else None
        while tp is not None and (broker.committed(GROUP, tp) or 0) < placed[-1].offset + 1:
            await asyncio.sleep(0.5)  # virtual time: the stage commits every second
        await worker.stop()
        return _skipped() - skipped

    skipped = run(main)
    return receiver, skipped


def _skipped() -> float:
    return metrics.REGISTRY.get_sample_value(
        "hookstream_deliveries_skipped_duplicate_total") or 0.0


def _log_outcomes(*jobs: DeliveryJob, status: str = "success") -> Callable[[LocalBroker], None]:
    def write(broker: LocalBroker) -> None:
        for job in jobs:
            value, headers = _outcome_record(job, status)
            broker.append(SETTINGS.topic(DELIVERY_LOG), value, key=b"wh_1", headers=headers)
    return write


def _sent(receiver: Receiver) -> list[str]:
    return [r.headers["X-Webhook-Delivery"] for r in receiver.requests]


def test_jobs_re_read_after_a_crash_are_sent_only_if_they_had_no_outcome() -> None:
    jobs = [_job(n) for n in range(10)]
    receiver, skipped = _deliver_all(jobs, before=_log_outcomes(*jobs[:6]))
    assert _sent(receiver) == [j.delivery_id for j in jobs[6:]]
    assert skipped == 6


def test_a_job_the_fan_out_made_again_is_sent_once() -> None:
    job = _job(1)
    receiver, skipped = _deliver_all([job, job, job])
    assert _sent(receiver) == [job.delivery_id]
    assert skipped == 2


def test_a_replay_is_sent_again_with_its_delivery_id() -> None:
    delivered = _job(1)
    replayed = replace(delivered, created_at=delivered.created_at + 60_000)
    receiver, skipped = _deliver_all([replayed], before=_log_outcomes(delivered))
    assert _sent(receiver) == [delivered.delivery_id]
    assert skipped == 0


def test_a_retry_is_sent_and_a_re_read_retry_is_not() -> None:
    first = _job(1)
    retry = replace(first, attempt=2, due_at=0)
    receiver, skipped = _deliver_all([retry], topic=RETRY_TOPICS[0],
                                     before=_log_outcomes(first, status="retrying"))
    assert _sent(receiver) == [first.delivery_id]
    receiver, skipped = _deliver_all([retry], topic=RETRY_TOPICS[0],
                                     before=_log_outcomes(first, retry))
    assert (_sent(receiver), skipped) == ([], 1)


def test_an_outcome_beyond_the_window_falls_back_to_at_least_once() -> None:
    small = replace(SETTINGS, duplicate_guard_size=3)
    jobs = [_job(n) for n in range(5)]
    receiver, skipped = _deliver_all([jobs[0], jobs[4]], settings=small,
                                     before=_log_outcomes(*jobs))
    # The newest three outcomes are known (2, 3, 4): the oldest job is sent again.
    assert _sent(receiver) == [jobs[0].delivery_id]
    assert skipped == 1


def test_the_guard_off_sends_everything() -> None:
    off = replace(SETTINGS, duplicate_guard_size=0)
    job = _job(1)
    receiver, skipped = _deliver_all([job, job], settings=off, before=_log_outcomes(job))
    assert (_sent(receiver), skipped) == ([job.delivery_id] * 2, 0)


def test_an_outcome_is_logged_only_after_its_retry_landed() -> None:
    """Else a crash between the two would leave an outcome saying "retrying" for a retry
    that was never written, and the guard would skip the job: lost."""
    order: list[str] = []

    class SlowRetries(LocalProducer):
        """Lands what goes to the first retry topic 10 ms late; records what landed. A
        send begins when made, as librdkafka's does, not when awaited."""

        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                 headers: list[tuple[str, bytes]] | None = None,
                 partition: int | None = None) -> Awaitable[Any]:
            sending = super().send(topic, value, key, headers, partition)

            async def landed() -> None:
                await asyncio.sleep(0.01 if topic == SETTINGS.topic(RETRY_TOPICS[0]) else 0)
                await sending
                order.append(topic.removeprefix(SETTINGS.topic_prefix))
            return asyncio.ensure_future(landed())

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        worker = DeliveryWorker(SETTINGS, _view([SUB]), box=BOX,
                                transport=httpx.MockTransport(Receiver(503)),
                                consumer_factory=broker.consumer,
                                producer_factory=lambda _settings: SlowRetries(broker),
                                tail_factory=broker.tail)
        await worker.start()  # its loop reads nothing: the record is handed to `handle`
        try:
            record = _record(SETTINGS.topic(DELIVERIES), JOB.encode())
            produced = await worker.handle(record, Origin(record.topic, 0, record.offset))
            await worker.produce_all(produced)
        finally:
            await worker.stop()

    run(main)
    assert order == [RETRY_TOPICS[0], DELIVERY_LOG]


def test_a_worker_that_stops_finishes_its_attempts_and_hands_back_the_rest() -> None:
    """A graceful stop (or a rebalance) sends nothing twice: the attempt under way finishes
    and is logged, the jobs still waiting for a slot are left to the next owner, which
    sends each of them once and skips the one that finished."""
    one_slot = replace(SETTINGS, per_webhook_concurrency=1)
    gate = asyncio.Event()
    requests: list[str] = []

    async def endpoint(request: httpx.Request) -> httpx.Response:
        requests.append(request.headers["X-Webhook-Delivery"])
        if len(requests) == 1:
            await gate.wait()
        return httpx.Response(200)

    def worker(broker: LocalBroker) -> DeliveryWorker:
        return DeliveryWorker(one_slot, _view([SUB]), box=BOX,
                              transport=httpx.MockTransport(endpoint),
                              consumer_factory=broker.consumer,
                              producer_factory=broker.producer, tail_factory=broker.tail)

    jobs = [_job(n) for n in range(3)]

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(one_slot))
        placed = [broker.append(one_slot.topic(DELIVERIES), j.encode(), key=b"wh_1")
                  for j in jobs]
        tp = TopicPartition(placed[0].topic, placed[0].partition)
        first = worker(broker)
        await first.start()
        while not requests:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # the other two wait for the webhook's one slot
        stopping = asyncio.create_task(first.stop())
        await asyncio.sleep(1)
        gate.set()  # the attempt under way ends; the stop waits for its outcome
        await stopping
        assert requests == [jobs[0].delivery_id]
        assert broker.committed(GROUP, tp) == placed[0].offset + 1
        second = worker(broker)
        await second.start()
        while (broker.committed(GROUP, tp) or 0) < placed[-1].offset + 1:
            await asyncio.sleep(0.5)
        await second.stop()

    run(main)
    assert requests == [j.delivery_id for j in jobs]


def test_a_partition_is_read_again_when_this_worker_takes_another_topic_of_it() -> None:
    """Holding only retry p, a worker never sees the outcomes another worker logs for the
    jobs of deliveries p; taking deliveries p (that worker died), it reads log p again."""
    from streams.delivery.duplicates import DuplicateGuard

    deliveries = TopicPartition(SETTINGS.topic(DELIVERIES), 1)
    retry = TopicPartition(SETTINGS.topic(RETRY_TOPICS[0]), 1)
    job = _job(7)

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        reads: list[int] = []

        def tail(settings: Settings) -> object:
            local = broker.tail(settings)
            newest = local.newest

            async def counted(topic: str, partition: int, count: int) -> list[object]:
                reads.append(partition)
                return list(await newest(topic, partition, count))

            local.newest = counted  # type: ignore[method-assign]
            return local

        guard = DuplicateGuard(SETTINGS, tail)  # type: ignore[arg-type]
        await guard.start()
        await guard.assigned([retry])
        value, headers = _outcome_record(job)  # logged meanwhile by the other worker
        broker.append(SETTINGS.topic(DELIVERY_LOG), value, partition=1, headers=headers)
        await guard.assigned([retry])  # unchanged: not read again
        async with guard.claim(1, job) as fresh:
            assert fresh  # it cannot know
        await guard.assigned([retry, deliveries])
        async with guard.claim(1, job) as fresh:
            assert not fresh
        assert reads == [1, 1]
        await guard.stop()

    run(main)
