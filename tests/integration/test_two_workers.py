"""Two worker processes form one group: both take partitions and every pair is delivered."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until

pytestmark = pytest.mark.integration

WORKSPACES = 6
EVENTS_PER_WORKSPACE = 20


@pytest.fixture(scope="module")
def dep(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(kafka_bootstrap, Path(tmp_path_factory.mktemp("two")))
    first = deployment.start_worker(wait=False)
    second = deployment.start_worker(wait=False)
    first.wait_ready()
    second.wait_ready()
    yield deployment
    deployment.close()


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
