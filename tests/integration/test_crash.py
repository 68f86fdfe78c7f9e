"""Losing nothing: SIGKILLed workers, a restarted broker, retries due while workers were down.

Each test pushes a few thousand (event, webhook) pairs and checks the receiver saw every pair
at least once, every duplicate with the same delivery id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import Producer

from localdev.kafka import LocalKafka
from streams.core.timeutil import now_ms
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.routing import DUE_AT_HEADER
from streams.delivery.stage import DeliveryWorker
from streams.kafka import topics

from ..support.kafka import committed_offsets, group_members, high_watermarks
from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until

pytestmark = pytest.mark.integration

FANOUT = 5


@pytest.fixture()
def dep(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(kafka_bootstrap, tmp_path, HOOKSTREAM_RETRY_DELAYS="1,1,1")
    yield deployment
    deployment.close()


def _webhook_ids(dep: Deployment, run: str) -> list[str]:
    """FANOUT webhook ids whose jobs land on every partition of hookstream.deliveries
    (keyed by webhook id, placed as the stages' aiokafka producer places them: murmur2), so
    whichever worker holds a partition of it has jobs there."""
    partitions = dep.settings.partitions
    hooks: list[str] = []
    covered: set[int] = set()
    n = 0
    while len(hooks) < FANOUT:
        wh, n = f"wh_{run}_{n}", n + 1
        partition = (murmur2(wh.encode()) & 0x7FFFFFFF) % partitions
        if partition not in covered or len(covered) == partitions:
            hooks.append(wh)
            covered.add(partition)
    return hooks


def _setup_webhooks(dep: Deployment, run: str) -> tuple[str, list[str]]:
    ws = f"ws_{run}"
    hooks = _webhook_ids(dep, run)
    for wh in hooks:
        dep.create_webhook(wh, ws, f"/c/{wh}", ["task.*"])
    for wh in hooks:
        wait_webhook_state(dep, wh, {"active": True})
    return ws, hooks


def _publish(dep: Deployment, ws: str, hooks: list[str], count: int,
             first: int = 0) -> set[tuple[str, str]]:
    """Events number `first` to `first + count - 1`, each to every webhook."""
    expected = set()
    for n in range(first, first + count):
        event = dep.publisher.publish_event({
            "id": f"evt_{ws}_{n}", "event": "task.updated", "workspace_id": ws,
            "timestamp": "2025-10-14T10:30:00Z", "data": {"id": f"task_{n}"}})
        expected |= {(event.id, wh) for wh in hooks}
    dep.publisher.flush()
    return expected


def _pairs(dep: Deployment, run: str) -> set[tuple[str, str]]:
    return {(json.loads(r.body)["id"], r.headers["x-webhook-id"])
            for r in list(dep.receiver.requests) if f"wh_{run}_" in r.path}


def _check_all_delivered(dep: Deployment, run: str, expected: set[tuple[str, str]],
                         timeout: float = 120.0) -> int:
    dep.receiver.wait_for(lambda _: _pairs(dep, run) >= expected, timeout=timeout,
                          what=f"all {len(expected)} pairs")
    mine = [r for r in list(dep.receiver.requests) if f"wh_{run}_" in r.path]
    for request in mine:
        event_id = json.loads(request.body)["id"]
        assert request.headers["x-webhook-delivery"] == delivery_id_for(
            event_id, request.headers["x-webhook-id"])
    assert _pairs(dep, run) == expected
    return len(mine) - len(expected)  # duplicates


def _arrived_after(dep: Deployment, run: str, pairs: set[tuple[str, str]],
                   moment: float) -> set[tuple[str, str]]:
    """Which of `pairs` the receiver got (again or first) after `moment` (time.time())."""
    return {(json.loads(r.body)["id"], r.headers["x-webhook-id"])
            for r in list(dep.receiver.requests)
            if f"wh_{run}_" in r.path and r.at > moment} & pairs


def _deliveries_group(dep: Deployment) -> str:
    return dep.prefix + DeliveryWorker.group


def _uncommitted(dep: Deployment) -> dict[tuple[str, int], tuple[int, int]]:
    """Partitions of hookstream.deliveries whose jobs the delivery group has not all
    committed: (committed, end offset) of each."""
    topic = dep.settings.topic(topics.DELIVERIES)
    ends = {(topic, p): high for p, high in
            high_watermarks(dep.settings.bootstrap_servers, topic).items()}
    committed = committed_offsets(dep.settings.bootstrap_servers, _deliveries_group(dep),
                                  sorted(ends))
    return {tp: (max(committed[tp], 0), end) for tp, end in ends.items()
            if max(committed[tp], 0) < end}


def _all_committed(dep: Deployment, ends: dict[tuple[str, int], int]) -> bool:
    """The delivery group committed at least up to these offsets."""
    committed = committed_offsets(dep.settings.bootstrap_servers, _deliveries_group(dep),
                                  sorted(ends))
    return all(committed[tp] >= end for tp, end in ends.items())


def test_sigkill_mid_run_then_restart_loses_nothing(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    started = time.monotonic()
    expected = _publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    worker.kill()
    # The kill came mid-run: deliveries were missing, and jobs were left uncommitted (a
    # dead worker commits nothing more, so this is the state it left).
    seen_at_kill = len(_pairs(dep, run))
    assert seen_at_kill < len(expected), "the kill came too late to test anything"
    left = _uncommitted(dep)
    assert left, "the killed worker had committed every job: nothing to take over"
    restarted = dep.start_worker()
    ready_at = time.time()
    duplicates = _check_all_delivered(dep, run, expected)
    assert _arrived_after(dep, run, expected, ready_at), "nothing came from the restarted worker"
    wait_until(lambda: _all_committed(dep, {tp: end for tp, (_, end) in left.items()}),
               what="the restarted worker committing what the killed one left")
    assert restarted.process is not None and restarted.process.poll() is None
    print(f"\nkill test: {len(expected)} pairs, killed at {seen_at_kill}, uncommitted "
          f"{ {tp[1]: c for tp, c in left.items()} }, {duplicates} duplicates, "
          f"{time.monotonic() - started:.1f}s")


def _history(dep: Deployment, port: int, webhook_id: str) -> list[dict[str, object]]:
    from ..support.api import call

    answer = call(port, "GET", f"/internal/webhooks/{webhook_id}/attempts?limit=1000",
                  dep.env["HOOKSTREAM_ADMIN_KEY"])
    assert answer.status == 200, answer.body
    return list(answer.body["data"])


def test_history_survives_a_kill(dep: Deployment) -> None:
    """The history table is rebuilt from its changelog by the worker that takes over."""
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    expected = {e for e, wh in _publish(dep, ws, hooks[:1], 50)}
    wait_until(lambda: {r["event_id"] for r in _history(dep, worker.port, hooks[0])}
               >= expected, what="50 attempts in the history")
    worker.kill()
    restarted = dep.start_worker()
    recovered = wait_until(lambda: _history(dep, restarted.port, hooks[0]), what="history")
    assert {r["event_id"] for r in recovered} >= expected


def test_one_of_two_workers_killed_loses_nothing(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    survivor = dep.start_worker(wait=False)
    victim = dep.start_worker(wait=False)
    survivor.wait_ready()
    victim.wait_ready()
    ws, hooks = _setup_webhooks(dep, run)
    bootstrap, group = dep.settings.bootstrap_servers, _deliveries_group(dep)
    deliveries = dep.settings.topic(topics.DELIVERIES)
    wait_until(lambda: len(m := group_members(bootstrap, group)) == 2 and all(m.values()),
               what="both workers holding partitions of the delivery group")
    expected = _publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    held = victim.readiness()
    assert held is not None, "the victim stopped answering before it was killed"
    victim.kill()
    # The group as the broker saw it when the victim died: both members, for the 15 s of
    # the dead one's session; what it held of hookstream.deliveries was left uncommitted.
    at_kill = group_members(bootstrap, group)
    left_by_all = _uncommitted(dep)
    seen_at_kill = len(_pairs(dep, run))
    assert seen_at_kill < len(expected), "the kill came too late to test anything"
    assert len(at_kill) == 2, at_kill
    (survivor_id,) = wait_until(lambda: len(m := group_members(bootstrap, group)) == 1 and m,
                                timeout=60, what="the killed worker gone from the group")
    assert survivor_id in at_kill, (survivor_id, at_kill)
    (victim_id,) = set(at_kill) - {survivor_id}
    # /readyz agrees which member was the victim: its count of delivery-group partitions.
    assert len(at_kill[victim_id]) == held["delivery_partitions"], (at_kill, held)
    owned = {tp for tp in at_kill[victim_id] if tp[0] == deliveries}
    assert owned, f"the killed worker held no partition of {deliveries}: {at_kill}"
    left = {tp: marks for tp, marks in left_by_all.items() if tp in owned}
    assert left, f"the killed worker had committed every job of {sorted(owned)}"
    # Its partitions moved to the survivor, which committed what it had left.
    taken = wait_until(lambda: (m := group_members(bootstrap, group)).get(survivor_id, set())
                       >= at_kill[victim_id] | at_kill[survivor_id] and m,
                       what="the survivor holding every partition")
    assert set(taken) == {survivor_id}
    duplicates = _check_all_delivered(dep, run, expected)
    wait_until(lambda: _all_committed(dep, {tp: end for tp, (_, end) in left.items()}),
               what="the survivor committing the victim's partitions")
    print(f"\ntwo workers, one killed at {seen_at_kill}: it held {sorted(p for _, p in owned)} "
          f"of the deliveries topic, uncommitted {left}; {duplicates} duplicates")


def test_broker_restart_mid_run_loses_nothing(dep: Deployment, local_broker: LocalKafka) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    # Enough that the worker cannot send them all while the broker is away: it keeps
    # POSTing jobs it has fetched, but at most 1,000 per partition wait for their outcome
    # to be acknowledged (streams.pipeline.stage.MAX_IN_FLIGHT_PER_PARTITION), and two of
    # the webhooks share a partition (_webhook_ids).
    first = _publish(dep, ws, hooks, 1000)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(first) // 4,
                          what="a quarter of the deliveries")
    at_stop = len(_pairs(dep, run))
    assert at_stop < len(first), "every delivery was made before the broker went down"
    assert local_broker.down(), "the broker was not stopped"
    at_down = len(_pairs(dep, run))
    local_broker.up()
    back_at = time.time()
    # More events after the restart take the same path.
    later = _publish(dep, ws, hooks, 100, first=1000)
    duplicates = _check_all_delivered(dep, run, first | later, timeout=180)
    # The run went on across the restart: deliveries of the first events came after it.
    after = _arrived_after(dep, run, first, back_at)
    assert after, "no delivery of the first events came after the broker was back"
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    print(f"\nbroker restart: {len(first)} pairs, {at_stop} delivered at the stop, {at_down} "
          f"when it was down, {len(after)} after it was back; {duplicates} duplicates")


def test_retry_due_while_workers_were_down_is_attempted_at_start(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    worker.stop()
    event_id = f"evt_{run}"
    job = DeliveryJob(
        delivery_id=delivery_id_for(event_id, hooks[0]), webhook_id=hooks[0], workspace_id=ws,
        event_id=event_id, event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
        data_json='{"id":"t"}', attempt=3, created_at=now_ms() - 400_000,
        due_at=now_ms() - 60_000)
    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers})
    producer.produce(dep.settings.topic(topics.RETRY_TOPICS[1]), job.encode(),
                     hooks[0].encode(), headers=[(DUE_AT_HEADER, str(job.due_at).encode())])
    assert producer.flush(10) == 0
    restarted = dep.start_worker()
    ready_at = time.time()
    dep.receiver.wait_for(lambda _: (event_id, hooks[0]) in _pairs(dep, run), timeout=30,
                          what="the overdue retry")
    request = next(r for r in dep.receiver.requests if json.loads(r.body)["id"] == event_id)
    assert request.at - ready_at < 5.0
    wait_until(lambda: "attempt 3: success" in restarted.log_text(), what="attempt 3 logged")
