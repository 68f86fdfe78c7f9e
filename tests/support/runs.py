"""Runs of (event, webhook) pairs through a deployment, for the crash and duplicate tests:
webhooks spread over every partition, events published, every pair checked at the
receiver with its delivery id, duplicates counted, offsets compared."""

from __future__ import annotations

import json

from aiokafka.partitioner import murmur2

from streams.delivery.models import delivery_id_for
from streams.delivery.stage import DeliveryWorker
from streams.kafka import topics

from .kafka import committed_offsets, high_watermarks
from .pipeline import Deployment, wait_webhook_state

FANOUT = 5


def webhook_ids(dep: Deployment, run: str) -> list[str]:
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


def setup_webhooks(dep: Deployment, run: str) -> tuple[str, list[str]]:
    ws = f"ws_{run}"
    hooks = webhook_ids(dep, run)
    for wh in hooks:
        dep.create_webhook(wh, ws, f"/c/{wh}", ["task.*"])
    for wh in hooks:
        wait_webhook_state(dep, wh, {"active": True})
    return ws, hooks


def publish(dep: Deployment, ws: str, hooks: list[str], count: int,
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


def pairs(dep: Deployment, run: str) -> set[tuple[str, str]]:
    return {(json.loads(r.body)["id"], r.headers["x-webhook-id"])
            for r in list(dep.receiver.requests) if f"wh_{run}_" in r.path}


def check_all_delivered(dep: Deployment, run: str, expected: set[tuple[str, str]],
                         timeout: float = 120.0) -> int:
    dep.receiver.wait_for(lambda _: pairs(dep, run) >= expected, timeout=timeout,
                          what=f"all {len(expected)} pairs")
    mine = [r for r in list(dep.receiver.requests) if f"wh_{run}_" in r.path]
    for request in mine:
        event_id = json.loads(request.body)["id"]
        assert request.headers["x-webhook-delivery"] == delivery_id_for(
            event_id, request.headers["x-webhook-id"])
    assert pairs(dep, run) == expected
    return len(mine) - len(expected)  # duplicates


def arrived_after(dep: Deployment, run: str, pairs: set[tuple[str, str]],
                   moment: float) -> set[tuple[str, str]]:
    """Which of `pairs` the receiver got (again or first) after `moment` (time.time())."""
    return {(json.loads(r.body)["id"], r.headers["x-webhook-id"])
            for r in list(dep.receiver.requests)
            if f"wh_{run}_" in r.path and r.at > moment} & pairs


def deliveries_group(dep: Deployment) -> str:
    return dep.prefix + DeliveryWorker.group


def uncommitted(dep: Deployment) -> dict[tuple[str, int], tuple[int, int]]:
    """Partitions of hookstream.deliveries whose jobs the delivery group has not all
    committed: (committed, end offset) of each."""
    topic = dep.settings.topic(topics.DELIVERIES)
    ends = {(topic, p): high for p, high in
            high_watermarks(dep.settings.bootstrap_servers, topic).items()}
    committed = committed_offsets(dep.settings.bootstrap_servers, deliveries_group(dep),
                                  sorted(ends))
    return {tp: (max(committed[tp], 0), end) for tp, end in ends.items()
            if max(committed[tp], 0) < end}


def all_committed(dep: Deployment, ends: dict[tuple[str, int], int]) -> bool:
    """The delivery group committed at least up to these offsets."""
    committed = committed_offsets(dep.settings.bootstrap_servers, deliveries_group(dep),
                                  sorted(ends))
    return all(committed[tp] >= end for tp, end in ends.items())
