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
from confluent_kafka import Producer

from localdev.kafka import LocalKafka
from streams.core.timeutil import now_ms
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.routing import DUE_AT_HEADER
from streams.kafka import topics

from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until

pytestmark = pytest.mark.integration

FANOUT = 5


@pytest.fixture()
def dep(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(kafka_bootstrap, tmp_path, HOOKSTREAM_RETRY_DELAYS="1,1,1")
    yield deployment
    deployment.close()


def _setup_webhooks(dep: Deployment, run: str) -> tuple[str, list[str]]:
    ws = f"ws_{run}"
    hooks = [f"wh_{run}_{i}" for i in range(FANOUT)]
    for wh in hooks:
        dep.create_webhook(wh, ws, f"/c/{wh}", ["task.*"])
    for wh in hooks:
        wait_webhook_state(dep, wh, {"active": True})
    return ws, hooks


def _publish(dep: Deployment, ws: str, hooks: list[str], count: int) -> set[tuple[str, str]]:
    expected = set()
    for n in range(count):
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


def test_sigkill_mid_run_then_restart_loses_nothing(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    worker = dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    started = time.monotonic()
    expected = _publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    worker.kill()
    seen_at_kill = len(_pairs(dep, run))
    assert seen_at_kill < len(expected), "the kill came too late to test anything"
    dep.start_worker()
    duplicates = _check_all_delivered(dep, run, expected)
    print(f"\nkill test: {len(expected)} pairs, killed at {seen_at_kill}, "
          f"{duplicates} duplicates, {time.monotonic() - started:.1f}s")


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
    first = dep.start_worker(wait=False)
    second = dep.start_worker(wait=False)
    first.wait_ready()
    second.wait_ready()
    ws, hooks = _setup_webhooks(dep, run)
    expected = _publish(dep, ws, hooks, 600)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    second.kill()
    assert len(_pairs(dep, run)) < len(expected), "the kill came too late to test anything"
    duplicates = _check_all_delivered(dep, run, expected)
    print(f"\ntwo workers, one killed: {duplicates} duplicates")


def test_broker_restart_mid_run_loses_nothing(dep: Deployment, local_broker: LocalKafka) -> None:
    run = uuid.uuid4().hex[:6]
    dep.start_worker()
    ws, hooks = _setup_webhooks(dep, run)
    expected = _publish(dep, ws, hooks, 400)
    dep.receiver.wait_for(lambda _: len(_pairs(dep, run)) >= len(expected) // 4,
                          what="a quarter of the deliveries")
    local_broker.down()
    local_broker.up()
    # More events after the restart take the same path.
    expected |= _publish(dep, ws, hooks, 100)
    duplicates = _check_all_delivered(dep, run, expected, timeout=180)
    print(f"\nbroker restart: {duplicates} duplicates")


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
