"""A slow endpoint sharing its partition with a fast one: the fast one flows, and the slow
one's surplus is parked on the retry topic, unattempted, then delivered: nothing lost."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from streams.delivery.models import SUCCESS, AttemptRecord
from streams.kafka import topics

from ..support.pipeline import Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

EVENTS = 30


DEPLOYMENT: DeploymentSpec = {"env": {
    # One partition: both webhooks' jobs share it, as many webhooks do in production.
    "HOOKSTREAM_PARTITIONS": "1", "HOOKSTREAM_PER_WEBHOOK_CONCURRENCY": "2",
    "HOOKSTREAM_DEFER_AFTER": "1", "HOOKSTREAM_RETRY_DELAYS": "1,1,1",
    "HOOKSTREAM_DELIVERY_TIMEOUT": "5"}}


def _deferred_total(dep: Deployment) -> float:
    url = f"http://127.0.0.1:{dep.workers[0].port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("hookstream_deliveries_deferred_total "):
                return float(line.split()[1])
    raise AssertionError("hookstream_deliveries_deferred_total not exported")


def test_a_slow_endpoints_surplus_is_parked_then_delivered_once(dep: Deployment) -> None:
    ws = f"ws_{uuid.uuid4().hex[:8]}"
    slow, fast = f"/slow/{ws}", f"/fast/{ws}"
    dep.receiver.delay[slow] = 1.0  # two slots: two deliveries a second at most
    dep.create_webhook("wh_slow_" + ws, ws, slow, ["task.*"])
    dep.create_webhook("wh_fast_" + ws, ws, fast, ["task.*"])
    wait_webhook_state(dep, "wh_fast_" + ws, {"active": True})
    wait_webhook_state(dep, "wh_slow_" + ws, {"active": True})
    before = _deferred_total(dep)
    log = dep.reader(topics.DELIVERY_LOG)

    sent = []
    for n in range(EVENTS):
        sent.append(dep.publish("task.created", ws, {"id": f"t{n}"}))
        time.sleep(0.05)  # an offered rate of 20 events/s, ten times what /slow takes

    def ids(path: str) -> list[str]:
        return [json.loads(r.body)["id"] for r in dep.receiver.at(path)]

    dep.receiver.wait_for(lambda _: set(ids(fast)) == set(sent), timeout=30,
                          what="every fast delivery")
    assert _deferred_total(dep) > before, "the slow endpoint's surplus was not deferred"
    # The fast webhook finished while the slow one was still far behind.
    assert len(ids(slow)) < EVENTS

    dep.receiver.wait_for(lambda _: set(ids(slow)) == set(sent), timeout=120,
                          what="every slow delivery")
    assert sorted(ids(slow)) == sorted(sent), "a deferred job was delivered twice"
    # Deferring is not a failure: each slow delivery succeeded at its first attempt.
    records = log.wait_for(
        lambda ms: sum(1 for m in ms if AttemptRecord.decode(m.value()).webhook_id
                       == "wh_slow_" + ws) >= EVENTS, timeout=30, what="the slow attempts")
    slow_records = [r for r in (AttemptRecord.decode(m.value()) for m in records)
                    if r.webhook_id == "wh_slow_" + ws]
    assert {(r.status, r.attempt) for r in slow_records} == {(SUCCESS, 1)}
    assert len(slow_records) == EVENTS
