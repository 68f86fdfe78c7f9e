"""Two worker processes form one group: both take partitions and every pair is delivered."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from streams.delivery.models import AttemptRecord
from streams.kafka import topics

from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

WORKSPACES = 6
EVENTS_PER_WORKSPACE = 20


DEPLOYMENT: DeploymentSpec = {"workers": 2, "env": {"HOOKSTREAM_RETRY_DELAYS": "1,1,1"}}


def test_two_workers_share_the_load_and_deliver_every_pair(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    hooks: dict[str, list[str]] = {}
    for w in range(WORKSPACES):
        ws = f"ws_{run}_{w}"
        hooks[ws] = [f"wh_{run}_{w}_{i}" for i in range(2)]
        for wh in hooks[ws]:
            dep.create_webhook(wh, ws, f"/two/{wh}", ["task.*"])
    for ws_hooks in hooks.values():
        for wh in ws_hooks:
            wait_webhook_state(dep, wh, {"active": True})

    expected: set[tuple[str, str]] = set()
    for n in range(EVENTS_PER_WORKSPACE):
        for ws, ws_hooks in hooks.items():
            event = dep.publisher.publish_event({
                "id": f"evt_{run}_{ws}_{n}", "event": "task.updated", "workspace_id": ws,
                "timestamp": "2025-10-14T10:30:00Z", "data": {"id": f"task_{n}"}})
            expected |= {(event.id, wh) for wh in ws_hooks}
    dep.publisher.flush()

    def pairs() -> set[tuple[str, str]]:
        return {(json.loads(r.body)["id"], r.headers["x-webhook-id"])
                for r in dep.receiver.requests if r.path.startswith("/two/")}

    dep.receiver.wait_for(lambda _: pairs() >= expected, timeout=60,
                          what=f"{len(expected)} (event, webhook) pairs")
    assert pairs() == expected

    def per_worker() -> list[int]:
        pattern = r"delivery dlv_\w+ to webhook wh_" + run
        return [len(re.findall(pattern, w.log_text())) for w in dep.workers]

    # Workers log an attempt just after the receiver answered it.
    counts = wait_until(lambda: sum(per_worker()) >= len(expected) and per_worker(),
                        what="every attempt in the workers' logs")
    assert all(count > 0 for count in counts), counts


def _attempts(dep: Deployment, port: int, webhook_id: str, **query: object) -> dict:
    import urllib.parse

    from ..support.api import call

    qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    answer = call(port, "GET", f"/internal/webhooks/{webhook_id}/attempts?{qs}",
                  dep.env["HOOKSTREAM_ADMIN_KEY"])
    assert answer.status == 200, answer.body
    return dict(answer.body)


def test_history_keeps_the_last_1000_attempts_newest_first_from_any_worker(
        dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    ws, wh, flaky = f"ws_h{run}", f"wh_h{run}", f"wh_f{run}"
    dep.create_webhook(wh, ws, f"/h/{wh}", ["comment.created"])
    dep.receiver.fail_first[f"/h/{flaky}"] = 1
    dep.create_webhook(flaky, ws, f"/h/{flaky}", ["user.added"])
    for hook in (wh, flaky):
        wait_webhook_state(dep, hook, {"active": True})
    total = 1010
    event_ids = [dep.publisher.publish_event({
        "id": f"evt_h{run}_{n:04d}", "event": "comment.created", "workspace_id": ws,
        "timestamp": "2025-10-14T10:30:00Z", "data": {"id": f"c{n}"}}).id for n in range(total)]
    dep.publisher.publish_event({"id": f"evt_f{run}", "event": "user.added", "workspace_id": ws,
                                 "timestamp": "2025-10-14T10:30:00Z", "data": {"id": "u"}})
    dep.publisher.flush()

    # Paged once the history holds every attempt: pages read while the last ones land
    # would see the ring move under the cursor (the oldest page short by as many). It
    # records the log in order, so it holds them all once its newest is the log's last.
    log = dep.reader(topics.DELIVERY_LOG)
    logged = log.wait_for(lambda ms: sum(1 for m in ms if m.key() == wh.encode()) >= total,
                          timeout=90, what="every attempt in the log")
    in_log = [AttemptRecord.decode(m.value()) for m in logged if m.key() == wh.encode()]

    def holds_every_attempt() -> bool:
        newest = _attempts(dep, dep.workers[0].port, wh, limit=1)["data"]
        return bool(newest) and newest[0]["delivery_id"] == in_log[-1].delivery_id

    wait_until(holds_every_attempt, timeout=90, what="every attempt in the history")
    pages: list[list[dict]] = []
    cursor = None
    while True:
        # Alternate workers: each request is routed to the owner of the webhook.
        port = dep.workers[len(pages) % 2].port
        body = _attempts(dep, port, wh, limit=300, cursor=cursor)
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    records = [r for p in pages for r in p]
    assert [len(p) for p in pages] == [300, 300, 300, 100]
    assert all(r["status"] == "success" and r["webhook_id"] == wh for r in records)
    # Newest first means the reverse of the log's order (attempts finish out of order).
    assert [r["delivery_id"] for r in records] == [a.delivery_id for a in in_log][::-1][:1000]
    assert {r["event_id"] for r in records} <= set(event_ids)

    wait_until(lambda: _attempts(dep, dep.workers[1].port, flaky, status="success")["data"],
               what="the flaky webhook's success")
    statuses = [r["status"] for r in _attempts(dep, dep.workers[1].port, flaky)["data"]]
    assert statuses == ["success", "retrying"]
    assert _attempts(dep, dep.workers[0].port, flaky, status="retrying")["data"][0]["attempt"] == 1
