"""The history through a rebalance: one of two workers stops gracefully while attempts are
being logged. The history's partitions move with faust's group (streams.history.feeder):
the stopping worker's last batch lands and is committed before it leaves, and the survivor
recovers the table and reads on from that offset. Until it does, it answers 503 (the history
is loading, or, before faust's group has seen the other worker go, its holder cannot be
reached), never a page that lacks what was recorded. So every logged attempt is in its
webhook's history exactly once: none skipped, none recorded twice."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from streams.delivery.models import AttemptRecord
from streams.kafka import topics

from ..support.api import call
from ..support.fuzzing import wait_no_lag
from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DEPLOYMENT: DeploymentSpec = {"workers": 2}
#: One webhook per workspace, spread over the partitions.
WEBHOOKS = 6
EVENTS = 150


def test_a_graceful_stop_mid_run_leaves_every_attempt_in_the_history_once(
        dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    hooks = {f"ws_r{run}_{n}": f"wh_r{run}_{n}" for n in range(WEBHOOKS)}
    for ws, wh in hooks.items():
        dep.create_webhook(wh, ws, f"/r/{wh}", ["task.*"])
    for wh in hooks.values():
        wait_webhook_state(dep, wh, {"active": True})
    for n in range(EVENTS):
        for ws in hooks:
            dep.publisher.publish_event({
                "id": f"evt_r{run}_{ws}_{n}", "event": "task.updated", "workspace_id": ws,
                "timestamp": "2025-10-14T10:30:00Z", "data": {"id": f"task_{n}"}})
    dep.publisher.flush()
    total = EVENTS * WEBHOOKS
    dep.receiver.wait_for(lambda rs: sum(1 for r in rs if r.path.startswith("/r/")) >= total // 3,
                          timeout=60, what="a third of the deliveries")
    dep.workers[1].stop()
    survivor = dep.workers[0]
    dep.receiver.wait_for(lambda rs: sum(1 for r in rs if r.path.startswith("/r/")) >= total,
                          timeout=120, what="every delivery")
    wait_no_lag(dep.settings, timeout=120)
    # Asked at once: the survivor may still be reading back what it took over.
    histories = {wh: wait_until(lambda wh=wh: _history(dep, survivor.port, wh),
                                what=f"the history of {wh}")[0] for wh in hooks.values()}

    log = dep.reader(topics.DELIVERY_LOG)
    logged = log.wait_for(
        lambda ms: sum(1 for m in ms if (m.key() or b"").startswith(f"wh_r{run}".encode()))
        >= total, what="every attempt in the log")
    in_log: dict[str, Counter[str]] = {wh: Counter() for wh in hooks.values()}
    for m in logged:
        if m.key() and m.key().decode() in in_log:
            record = AttemptRecord.decode(m.value())
            in_log[record.webhook_id][f"{record.delivery_id}#{record.attempt}"] += 1
    for wh, attempts in in_log.items():
        kept = Counter(f"{r['delivery_id']}#{r['attempt']}" for r in histories[wh])
        assert kept == attempts, (wh, kept - attempts, attempts - kept)


def _history(dep: Deployment, port: int,
             webhook_id: str) -> tuple[list[dict[str, object]]] | None:
    """(the attempts the worker keeps,), the first 200's, even if empty; None while it
    answers that the history is loading, or that its holder cannot be reached (until
    faust's group sees the stopped worker gone, the survivor forwards its webhooks'
    reads there)."""
    answer = call(port, "GET", f"/internal/webhooks/{webhook_id}/attempts?limit=1000",
                  dep.env["HOOKSTREAM_ADMIN_KEY"])
    if answer.status == 503:
        assert answer.body["error"]["code"] in ("history_loading", "unavailable"), answer.body
        assert int(answer.headers["Retry-After"]) >= 1
        return None
    assert answer.status == 200, answer.body
    return (list(answer.body["data"]),)
