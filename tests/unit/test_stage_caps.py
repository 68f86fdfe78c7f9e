"""README, "Delivery guarantees": "A partition with 1,000 jobs in flight is paused alone."

tests/unit/test_stage_loop.py drives the pause with a probe stage and the module's own
constant (MAX_IN_FLIGHT_PER_PARTITION), so it would pass whatever that constant became.
Here the real delivery stage (DeliveryWorker, on the in-memory broker, in virtual time as
test_stage_loop.run gives it) runs with the default settings, and the documented number is
written down: 999 jobs in flight leave the partition read, the 1,000th pauses it, further
jobs on it are not read while the other partitions' jobs are delivered; once the held
endpoint answers, the partition resumes and every job is delivered and committed.

A job is in flight from the moment the stage reads it until its outcome is acknowledged:
here most of the 1,000 wait for one of the webhook's slots, only
`per_webhook_concurrency` of them are POSTs the endpoint holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition

from streams.core.secretbox import SecretBox, generate_master_key
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.stage import DeliveryWorker
from streams.kafka.topics import DELIVERIES, DELIVERY_LOG, SUBSCRIPTIONS, all_topics
from streams.pipeline.clients import ProducerFactory, Record
from streams.pipeline.local import LocalBroker, LocalProducer
from streams.pipeline.records import Origin, Produce
from streams.pipeline.stage import COMMIT_INTERVAL_S
from streams.settings import Settings
from streams.subscriptions.model import Subscription
from streams.subscriptions.view import SubscriptionsView

from .test_stage_loop import run

#: The number README.md promises; not read from the code, so a change of the code's limit
#: fails here until the documentation (and this line) change with it.
DOCUMENTED_IN_FLIGHT_LIMIT = 1_000

#: The defaults, but for the topic prefix and a master key of the test's own.
SETTINGS = Settings(topic_prefix="t.", master_key=generate_master_key("caps"))
BOX = SecretBox.from_env(generate_master_key("caps-box"), Path("/nonexistent"))
HELD_HOST, FREE_HOST = "held.example.com", "free.example.com"


def _sub(webhook_id: str, workspace: str, host: str) -> Subscription:
    return Subscription(id=webhook_id, workspace_id=workspace, url=f"https://{host}/in",
                        events=("task.*",), secret=BOX.seal("whsec_stage_caps_secret"),
                        active=True, created_at=0, updated_at=0)


HELD = _sub("wh_held", "ws_held", HELD_HOST)
FREE = _sub("wh_free", "ws_free", FREE_HOST)


def _job(sub: Subscription, n: int) -> bytes:
    event_id = f"evt_{sub.id}_{n}"
    return DeliveryJob(
        delivery_id=delivery_id_for(event_id, sub.id), webhook_id=sub.id,
        workspace_id=sub.workspace_id, event_id=event_id, event_type="task.created",
        event_timestamp="2025-10-14T10:30:00Z", data_json=f'{{"id":"task_{n}"}}', attempt=1,
        created_at=0).encode()


class _Endpoints:
    """The held host answers once `gate` is set; the free one at once. Keeps every request."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.requests: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests[request.url.host] += 1
        if request.url.host == HELD_HOST:
            await self.gate.wait()
        return httpx.Response(200)


class _CountingWorker(DeliveryWorker):
    """The real delivery stage; counts the records its loop hands to `handle`."""

    def __init__(self, broker: LocalBroker, endpoints: _Endpoints,
                 settings: Settings = SETTINGS,
                 producer_factory: ProducerFactory | None = None) -> None:
        view = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))
        for sub in (HELD, FREE):
            view.index.put(sub)
        view.ready.set()
        super().__init__(settings, view, box=BOX, transport=httpx.MockTransport(endpoints),
                         consumer_factory=broker.consumer,
                         producer_factory=producer_factory or broker.producer,
                         tail_factory=broker.tail)
        self.handled: Counter[TopicPartition] = Counter()
        self.finished: Counter[TopicPartition] = Counter()
        self._changed = asyncio.Condition()

    async def handle(self, record: Record, origin: Origin) -> list[Produce]:
        tp = TopicPartition(origin.topic, origin.partition)
        self.handled[tp] += 1
        async with self._changed:
            self._changed.notify_all()
        produced = await super().handle(record, origin)
        self.finished[tp] += 1
        async with self._changed:
            self._changed.notify_all()
        return produced

    async def until(self, condition: object) -> None:
        assert callable(condition)
        async with self._changed:
            await self._changed.wait_for(condition)


def test_the_delivery_stage_pauses_a_partition_at_1000_jobs_in_flight_alone() -> None:
    assert SETTINGS.per_webhook_concurrency < DOCUMENTED_IN_FLIGHT_LIMIT  # most jobs queue

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        deliveries = SETTINGS.topic(DELIVERIES)
        p0, p1 = TopicPartition(deliveries, 0), TopicPartition(deliveries, 1)
        endpoints = _Endpoints()
        worker = _CountingWorker(broker, endpoints)
        await worker.start()
        (consumer,) = broker.members(f"t.{DeliveryWorker.group}")

        def append(sub: Subscription, partition: int, numbers: range) -> None:
            for n in numbers:
                broker.append(deliveries, _job(sub, n), key=sub.id.encode(),
                              partition=partition)

        # One short of the limit: all read, none done (the endpoint holds them), not paused.
        limit = DOCUMENTED_IN_FLIGHT_LIMIT
        append(HELD, 0, range(limit - 1))
        await worker.until(lambda: worker.handled[p0] == limit - 1)
        assert worker.finished[p0] == 0
        assert consumer.paused() == set()

        # The 1,000th job in flight pauses its partition.
        append(HELD, 0, range(limit - 1, limit))
        await worker.until(lambda: worker.handled[p0] == limit)
        assert consumer.paused() == {p0}

        # More jobs on it stay unread; another partition's job is delivered meanwhile.
        append(HELD, 0, range(limit, limit + 200))
        append(FREE, 1, range(1))
        await worker.until(lambda: worker.finished[p1] == 1)
        assert endpoints.requests[FREE_HOST] == 1
        await asyncio.sleep(2)  # ten polls of the stage (virtual time): none reads p0
        assert worker.handled[p0] == limit
        assert worker.finished[p0] == 0
        assert consumer.paused() == {p0}
        # In flight means read and not done: only the webhook's own slots are attempts.
        assert endpoints.requests[HELD_HOST] == SETTINGS.per_webhook_concurrency

        # The endpoint answers: the partition resumes, every job is delivered, committed.
        endpoints.gate.set()
        await worker.until(lambda: worker.finished[p0] == limit + 200)
        assert worker.handled[p0] == limit + 200
        assert endpoints.requests[HELD_HOST] == limit + 200
        assert consumer.paused() == set()
        group = f"t.{DeliveryWorker.group}"
        while broker.committed(group, p0) != limit + 200:
            await asyncio.sleep(COMMIT_INTERVAL_S)  # virtual: the next commit
        await worker.stop()

    run(main)


class _HeldOutcomes(LocalProducer):
    """Acknowledges an attempt record (hookstream.delivery-log) only once `gate` is set;
    counts those it holds."""

    def __init__(self, broker: LocalBroker, settings: Settings) -> None:
        super().__init__(broker)
        self.log_topic = settings.topic(DELIVERY_LOG)
        self.gate = asyncio.Event()
        self.held = 0

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == self.log_topic and not self.gate.is_set():
            self.held += 1
            await self.gate.wait()
        return await super().send_and_wait(topic, *args, **kwargs)


def test_an_answered_attempt_frees_its_webhooks_slot_and_holds_the_workers_until_durable(
) -> None:
    """README, Concurrency and Delivery guarantees: the webhook's slots bound the requests
    its endpoint answers at once; the worker's bound the attempts a kill -9 can repeat, so
    they are held until the outcome is acknowledged. One webhook slot, two worker slots,
    outcomes not acknowledged: the endpoint gets a second request once it has answered the
    first, and no third while two outcomes are not durable."""
    settings = Settings(topic_prefix="t.", master_key=SETTINGS.master_key,
                        per_webhook_concurrency=1, delivery_concurrency=2,
                        per_workspace_concurrency=2)

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(settings))
        producer = _HeldOutcomes(broker, settings)
        endpoints = _Endpoints()
        worker = _CountingWorker(broker, endpoints, settings, lambda _s: producer)
        await worker.start()
        deliveries = settings.topic(DELIVERIES)
        for n in range(3):
            broker.append(deliveries, _job(FREE, n), key=FREE.id.encode(), partition=0)
        tp = TopicPartition(deliveries, 0)
        await worker.until(lambda: worker.handled[tp] == 3)
        while not producer.held:
            await asyncio.sleep(0.01)  # virtual time: the loop's turns until one is held
        # Virtual: time for the next requests to be made, short of deferring the third.
        assert settings.defer_after > 5
        await asyncio.sleep(5)
        assert endpoints.requests[FREE_HOST] == 2
        assert producer.held == 2
        assert worker.finished[tp] == 0

        producer.gate.set()
        await worker.until(lambda: worker.finished[tp] == 3)
        assert endpoints.requests[FREE_HOST] == 3
        assert len(broker.records(producer.log_topic)) == 3
        await worker.stop()

    run(main)
