"""Losing nothing: SIGKILLed workers, a restarted broker, retries due while workers were down.

Each test pushes a few thousand (event, webhook) pairs and checks the receiver saw every pair
at least once, every duplicate with the same delivery id.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from localdev.kafka import LocalKafka
from streams.core.timeutil import now_ms
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.routing import DUE_AT_HEADER
from streams.kafka import topics

from ..support.kafka import group_members
from ..support.pipeline import Deployment
from ..support.runs import (
    all_committed,
    arrived_after,
    check_all_delivered,
    deliveries_group,
    pairs,
    publish,
    setup_webhooks,
    uncommitted,
)
from ..support.waiting import wait_until
from ..support.workers import bindable

pytestmark = pytest.mark.integration



@pytest.fixture()
def dep(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    # A worker-wide cap below what 5 webhooks could take (16 each), so that the bound on
    # duplicates after a kill (the attempts in flight: at most this) is tight.
    deployment = Deployment(kafka_bootstrap, tmp_path, HOOKSTREAM_RETRY_DELAYS="1,1,1",
                            HOOKSTREAM_DELIVERY_CONCURRENCY="40")
    yield deployment
    deployment.close()


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test's own (`hookstream kafka up`'s, in a HOOKSTREAM_HOME of its
    own with the session's jars, on free ports), for a test that stops and restarts it:
    the broker the other tests share (and, under xdist, use meanwhile) is not touched."""
    jars = LocalKafka.from_env(1).ensure_jars()  # the session's own (downloaded once)
    home = tmp_path / "broker"
    home.mkdir()
    (home / "kafka-libs").symlink_to(jars)
    for _ in range(200):
        port = random.randrange(10000, 19000, 2)  # below the ephemeral ports
        if bindable(port) and bindable(port + 1):
            break
    else:
        raise AssertionError("no two free ports for a broker")
    local = LocalKafka(home, port=port, controller_port=port + 1)
    try:
        status, started = local.up(timeout=120)
        assert started and status.running, status.detail
        yield local
    finally:
        local.down()


@pytest.fixture()
def own_dep(own_broker: LocalKafka, tmp_path: Path) -> Iterator[Deployment]:
    """As `dep`, on the test's own broker."""
    deployment = Deployment(own_broker.bootstrap, tmp_path, HOOKSTREAM_RETRY_DELAYS="1,1,1",
                            HOOKSTREAM_DELIVERY_CONCURRENCY="40")
    yield deployment
    deployment.close()


def test_sigkill_mid_run_then_restart_loses_nothing(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = setup_webhooks(dep, run)
    started = time.monotonic()
    expected = publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    worker.kill()
    # The kill came mid-run: deliveries were missing, and jobs were left uncommitted (a
    # dead worker commits nothing more, so this is the state it left).
    seen_at_kill = len(pairs(dep, run))
    assert seen_at_kill < len(expected), "the kill came too late to test anything"
    left = uncommitted(dep)
    assert left, "the killed worker had committed every job: nothing to take over"
    restarted = dep.start_worker()
    ready_at = time.time()
    duplicates = check_all_delivered(dep, run, expected)
    assert arrived_after(dep, run, expected, ready_at), "nothing came from the restarted worker"
    wait_until(lambda: all_committed(dep, {tp: end for tp, (_, end) in left.items()}),
               what="the restarted worker committing what the killed one left")
    assert restarted.process is not None and restarted.process.poll() is None
    # Effectively once: only attempts in flight at the kill are sent again.
    assert duplicates <= dep.settings.delivery_concurrency, duplicates
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
    ws, hooks = setup_webhooks(dep, run)
    expected = {e for e, wh in publish(dep, ws, hooks[:1], 50)}
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
    ws, hooks = setup_webhooks(dep, run)
    bootstrap, group = dep.settings.bootstrap_servers, deliveries_group(dep)
    deliveries = dep.settings.topic(topics.DELIVERIES)
    wait_until(lambda: len(m := group_members(bootstrap, group)) == 2 and all(m.values()),
               what="both workers holding partitions of the delivery group")
    expected = publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    held = victim.readiness()
    assert held is not None, "the victim stopped answering before it was killed"
    victim.kill()
    # The group as the broker saw it when the victim died: both members, for the 15 s of
    # the dead one's session; what it held of hookstream.deliveries was left uncommitted.
    at_kill = group_members(bootstrap, group)
    left_by_all = uncommitted(dep)
    seen_at_kill = len(pairs(dep, run))
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
    duplicates = check_all_delivered(dep, run, expected)
    wait_until(lambda: all_committed(dep, {tp: end for tp, (_, end) in left.items()}),
               what="the survivor committing the victim's partitions")
    assert duplicates <= dep.settings.delivery_concurrency, duplicates
    print(f"\ntwo workers, one killed at {seen_at_kill}: it held {sorted(p for _, p in owned)} "
          f"of the deliveries topic, uncommitted {left}; {duplicates} duplicates")


@pytest.mark.timeout(300)  # its own broker starts twice (the suite's 180 s: once)
def test_broker_restart_mid_run_loses_nothing(own_dep: Deployment,
                                              own_broker: LocalKafka) -> None:
    dep, local_broker = own_dep, own_broker
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = setup_webhooks(dep, run)
    # Enough that the worker cannot send them all while the broker is away: it keeps
    # POSTing jobs it has fetched, but at most 1,000 per partition wait for their outcome
    # to be acknowledged (streams.pipeline.stage.MAX_IN_FLIGHT_PER_PARTITION), and two of
    # the webhooks share a partition (_webhook_ids).
    first = publish(dep, ws, hooks, 1000)
    dep.receiver.wait_for(lambda _: len(pairs(dep, run)) >= len(first) // 4,
                          what="a quarter of the deliveries")
    at_stop = len(pairs(dep, run))
    assert at_stop < len(first), "every delivery was made before the broker went down"
    assert local_broker.down(), "the broker was not stopped"
    at_down = len(pairs(dep, run))
    local_broker.up()
    back_at = time.time()
    # More events after the restart take the same path.
    later = publish(dep, ws, hooks, 100, first=1000)
    duplicates = check_all_delivered(dep, run, first | later, timeout=180)
    # The run went on across the restart: deliveries of the first events came after it.
    after = arrived_after(dep, run, first, back_at)
    assert after, "no delivery of the first events came after the broker was back"
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    print(f"\nbroker restart: {len(first)} pairs, {at_stop} delivered at the stop, {at_down} "
          f"when it was down, {len(after)} after it was back; {duplicates} duplicates")


@pytest.mark.exclusive  # attempted within 5 s of the start
def test_retry_due_while_workers_were_down_is_attempted_at_start(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = setup_webhooks(dep, run)
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
    dep.receiver.wait_for(lambda _: (event_id, hooks[0]) in pairs(dep, run), timeout=30,
                          what="the overdue retry")
    request = next(r for r in dep.receiver.requests if json.loads(r.body)["id"] == event_id)
    assert request.at - ready_at < 5.0
    wait_until(lambda: "attempt 3: success" in restarted.log_text(), what="attempt 3 logged")
