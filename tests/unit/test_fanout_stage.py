"""streams.fanout.stage.FanoutStage: a domain event x its workspace's subscriptions -> jobs.

`handle` is called on records the in-memory broker (streams.pipeline.local) appended; one
test runs the whole stage on it, in virtual time (test_stage_loop.run)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import catalog
from streams.core.filters import parse_filter
from streams.core.matching import matches
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.fanout.stage import FanoutStage
from streams.kafka.topics import DELIVERIES, INVALID, SUBSCRIPTIONS, all_topics, domain_topic
from streams.pipeline.local import LocalBroker, NoRebalanceListener
from streams.pipeline.records import Origin, Produce
from streams.settings import Settings
from streams.subscriptions.model import Subscription
from streams.subscriptions.view import SubscriptionsView

from .test_stage_loop import broker_clock, run

SETTINGS = Settings(topic_prefix="t.", partitions=3)
TASKS = SETTINGS.topic(domain_topic("task"))
EVENT: dict[str, Any] = {
    "id": "evt_1", "event": "task.created", "timestamp": "2025-10-14T10:30:00Z",
    "workspace_id": "ws_1", "data": {"id": "task_789", "name": "Design homepage"}}


def _sub(webhook_id: str, events: tuple[str, ...] = ("task.*",), workspace: str = "ws_1",
         active: bool = True) -> Subscription:
    return Subscription(id=webhook_id, workspace_id=workspace,
                        url=f"https://hooks.example.com/{webhook_id}", events=events,
                        secret="whsec_fanout", active=active, created_at=0, updated_at=0)


def _view(*subs: Subscription) -> SubscriptionsView:
    """A view as a worker holds it once caught up; never started (no Kafka)."""
    view = SubscriptionsView(SETTINGS.bootstrap_servers, SETTINGS.topic(SUBSCRIPTIONS))
    for sub in subs:
        view.index.put(sub)
    view.ready.set()
    return view


SUBS = (
    _sub("wh_active"),
    _sub("wh_disabled", ("task.created",), active=False),
    _sub("wh_projects", ("project.*",)),  # another event type
    _sub("wh_elsewhere", workspace="ws_2"),  # another workspace
)


def _broker() -> LocalBroker:
    broker = LocalBroker(clock=broker_clock)
    broker.create_topics(all_topics(SETTINGS))
    return broker


def _stage(broker: LocalBroker, view: SubscriptionsView) -> FanoutStage:
    return FanoutStage(SETTINGS, view, consumer_factory=broker.consumer,
                       producer_factory=broker.producer)


def _jobs(produced: list[Produce]) -> dict[str, DeliveryJob]:
    assert {p.topic for p in produced} == {DELIVERIES}
    jobs = {p.key: DeliveryJob.decode(p.value) for p in produced}
    assert len(jobs) == len(produced)
    return jobs


def test_an_event_becomes_one_job_per_matching_webhook_active_or_not() -> None:
    async def main() -> None:
        broker = _broker()
        record = broker.append(TASKS, json.dumps(EVENT).encode(), key=b"ws_1", partition=2)
        stage = _stage(broker, _view(*SUBS))
        jobs = _jobs(await stage.handle(record, Origin(TASKS, 2, record.offset)))

        assert set(jobs) == {"wh_active", "wh_disabled"}  # keyed by webhook
        for webhook_id, job in jobs.items():
            assert job.delivery_id == delivery_id_for("evt_1", webhook_id)
            assert (job.webhook_id, job.workspace_id, job.event_id, job.event_type,
                    job.event_timestamp, json.loads(job.data_json)) == (
                webhook_id, "ws_1", "evt_1", "task.created", EVENT["timestamp"], EVENT["data"])
            assert (job.attempt, job.due_at, job.outcomes) == (1, None, ())
            assert (job.source_topic, job.source_partition, job.source_offset) == (TASKS, 2, 0)

    run(main)


def test_an_event_nobody_wants_makes_no_job() -> None:
    async def main() -> None:
        broker = _broker()
        event = {**EVENT, "event": "comment.created", "data": {"id": "c_1", "body": "hi"}}
        record = broker.append(TASKS, json.dumps(event).encode(), partition=0)
        stage = _stage(broker, _view(*SUBS))
        assert await stage.handle(record, Origin(TASKS, 0, record.offset)) == []

    run(main)


def test_a_reprocessed_event_yields_the_same_delivery_ids() -> None:
    async def main() -> None:
        broker = _broker()
        stage = _stage(broker, _view(*SUBS))
        value = json.dumps({k: v for k, v in EVENT.items() if k != "id"}).encode()
        record = broker.append(TASKS, value, partition=1)  # no id: one is derived
        first = _jobs(await stage.handle(record, Origin(TASKS, 1, record.offset)))
        again = _jobs(await stage.handle(record, Origin(TASKS, 1, record.offset)))
        assert {k: j.delivery_id for k, j in first.items()} == {
            k: j.delivery_id for k, j in again.items()}

    run(main)


def test_a_bad_event_is_quarantined_with_its_reason() -> None:
    async def main() -> None:
        broker = _broker()
        record = broker.append(TASKS, b"\x00not an event", key=b"ws_1", partition=1)
        stage = _stage(broker, _view(*SUBS))
        (copy,) = await stage.handle(record, Origin(TASKS, 1, record.offset))
        headers = dict(copy.headers)
        assert (copy.topic, copy.key, copy.value) == (INVALID, "ws_1", b"\x00not an event")
        assert headers["hookstream-source-topic"] == TASKS.encode()
        assert headers["hookstream-source-offset"] == b"0"
        assert headers["hookstream-error"].startswith(b"invalid event: ")

    run(main)


def test_the_stage_waits_for_the_view_then_fans_out_and_commits() -> None:
    async def main() -> None:
        broker = _broker()
        view = _view(*SUBS)
        view.ready.clear()
        stage = _stage(broker, view)
        await stage.start()
        broker.append(TASKS, json.dumps(EVENT).encode(), key=b"ws_1", partition=0)
        broker.append(TASKS, b"{", key=b"ws_1", partition=0)
        deliveries = SETTINGS.topic(DELIVERIES)
        await asyncio.sleep(5)
        assert broker.records(deliveries) == []  # not before the view is ready
        view.ready.set()

        reader = broker.consumer(SETTINGS, "reader", 0)
        reader.subscribe([deliveries, SETTINGS.topic(INVALID)], listener=NoRebalanceListener())
        await reader.start()
        got: list[Any] = []
        while len(got) < 3:
            got += [r for rs in (await reader.getmany(timeout_ms=1000)).values() for r in rs]
        await stage.stop()

        jobs = {r.key: r for r in got if r.topic == deliveries}
        assert set(jobs) == {b"wh_active", b"wh_disabled"}
        for key, record in jobs.items():  # on the webhook's partition, as Kafka keys it
            assert record.partition == DefaultPartitioner()(key, [0, 1, 2], [])
        (invalid,) = [r for r in got if r.topic != deliveries]
        assert dict(invalid.headers)["hookstream-source-offset"] == b"1"
        assert broker.committed(f"t.{FanoutStage.group}", TopicPartition(TASKS, 0)) == 2
        await reader.stop()

    run(main)


def test_a_filter_narrows_its_webhook_to_the_events_it_matches() -> None:
    """The filter reads {event, workspace_id, data}; a webhook without one is unaffected, and
    so is a neighbour whose filter matches."""
    high = parse_filter({"data.priority": {"$in": ["high", "urgent"]}}).to_json()
    named = parse_filter({"$and": [{"event": "task.created"},
                                   {"data.name": {"$prefix": "Design"}}]}).to_json()
    subs = (_sub("wh_all"), replace(_sub("wh_high"), filter=high),
            replace(_sub("wh_named"), filter=named))

    async def main() -> None:
        broker = _broker()
        stage = _stage(broker, _view(*subs))
        made = []
        for data in ({"id": "t_1", "name": "Design homepage", "priority": "high"},
                     {"id": "t_2", "name": "Fix bug", "priority": "low"},
                     {"id": "t_3", "name": "Design logo"}):
            record = broker.append(TASKS, json.dumps({**EVENT, "id": data["id"],
                                                      "data": data}).encode(), partition=0)
            made.append(set(_jobs(await stage.handle(record, Origin(TASKS, 0, record.offset)))))
        assert made == [{"wh_all", "wh_high", "wh_named"}, {"wh_all"}, {"wh_all", "wh_named"}]

    run(main)


def _operational(about: str, event_type: str = "webhook.failing") -> dict[str, Any]:
    data: dict[str, Any] = (
        {"webhook_id": about, "url": "https://hooks.example.com/a", "consecutive_failures": 5,
         "failure_limit": 10, "last_error": "HTTP 503"}
        if event_type.startswith("webhook.") else
        {"delivery_id": "dlv_1", "webhook_id": about, "event_id": "evt_0",
         "event_type": "task.created", "attempts": 4, "reason": "attempts_exhausted"})
    return {"id": f"evt_op_{about}", "event": event_type,
            "timestamp": "2025-10-14T10:30:00Z", "workspace_id": "ws_1", "data": data}


def test_an_operational_event_goes_to_its_subscribers_but_never_to_the_webhook_it_is_about(
        ) -> None:
    """wh_a fails: its news reaches wh_b (webhook.*), not wh_a itself (webhook.*, yet the
    subject), nor wh_star (`*` is the domain events), nor wh_deliveries (another family),
    nor a webhook of another workspace."""
    subs = (_sub("wh_a", ("task.*", "webhook.*")), _sub("wh_b", ("webhook.*",)),
            _sub("wh_star", ("*",)), _sub("wh_deliveries", ("delivery.*",)),
            _sub("wh_other", ("webhook.*",), workspace="ws_2"))

    async def main() -> None:
        broker = _broker()
        stage = _stage(broker, _view(*subs))
        topic = SETTINGS.topic(domain_topic("webhook"))
        record = broker.append(topic, json.dumps(_operational("wh_a")).encode(),
                               key=b"ws_1", partition=0)
        jobs = _jobs(await stage.handle(record, Origin(topic, 0, record.offset)))
        assert set(jobs) == {"wh_b"}
        assert json.loads(jobs["wh_b"].data_json)["webhook_id"] == "wh_a"
        assert jobs["wh_b"].delivery_id == delivery_id_for("evt_op_wh_a", "wh_b")

    run(main)


WEBHOOKS = st.sampled_from([f"wh_{n}" for n in range(6)])
PATTERNS = st.sampled_from(["*", "webhook.*", "delivery.*", "webhook.failing",
                            "webhook.disabled", "delivery.dead_lettered", "task.*"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(WEBHOOKS, st.lists(PATTERNS, min_size=1, max_size=3), min_size=1),
       WEBHOOKS, st.sampled_from(sorted(catalog.OPERATIONAL_EVENT_TYPES["webhook"]
                                        + catalog.OPERATIONAL_EVENT_TYPES["delivery"])))
def test_no_webhook_ever_receives_an_operational_event_about_itself(
        patterns: dict[str, list[str]], about: str, event_type: str) -> None:
    """Whoever subscribes to what: the jobs are exactly the subscribers other than the
    subject."""
    subs = [_sub(w, tuple(p)) for w, p in patterns.items()]

    async def main() -> set[str]:
        broker = _broker()
        stage = _stage(broker, _view(*subs))
        topic = SETTINGS.topic(domain_topic(catalog.family_of(event_type)))
        record = broker.append(topic, json.dumps(_operational(about, event_type)).encode(),
                               partition=0)
        produced = await stage.handle(record, Origin(topic, 0, record.offset))
        return set(_jobs(produced)) if produced else set()

    wanted = {s.id for s in subs if matches(s.events, event_type)}
    assert run(main) == wanted - {about}
