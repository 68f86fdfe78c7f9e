"""A workspace's flood does not take the worker's delivery slots from the others: it holds at
most HOOKSTREAM_PER_WORKSPACE_CONCURRENCY, and a newcomer's job takes the next free slot
instead of queueing behind the flood."""

from __future__ import annotations

import json
import uuid

import pytest

from ..support.pipeline import Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

SLOTS = 20
PER_WORKSPACE = 8
SLOW_S = 0.5
FLOOD_HOOKS = 30
FLOOD_EVENTS = 6  # 180 slow jobs: about 11 s with 8 slots


DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_DELIVERY_CONCURRENCY": str(SLOTS),
                      "HOOKSTREAM_PER_WORKSPACE_CONCURRENCY": str(PER_WORKSPACE)}}


def test_a_flooding_workspace_keeps_to_its_share(dep: Deployment) -> None:
    run = uuid.uuid4().hex[:6]
    flood_ws, calm_ws = f"ws_flood_{run}", f"ws_calm_{run}"
    flood = [f"wh_f{n}_{run}" for n in range(FLOOD_HOOKS)]
    for wh in flood:
        dep.create_webhook(wh, flood_ws, f"/flood/{wh}", ["*"])
        dep.receiver.delay[f"/flood/{wh}"] = SLOW_S
    calm = f"wh_calm_{run}"
    dep.create_webhook(calm, calm_ws, f"/calm/{calm}", ["*"])
    for wh in [*flood, calm]:
        wait_webhook_state(dep, wh, {"active": True})
    for n in range(FLOOD_EVENTS):
        dep.publish("task.created", flood_ws, {"id": f"t{n}"})
    total = FLOOD_HOOKS * FLOOD_EVENTS
    dep.receiver.wait_for(lambda rs: sum(r.path.startswith("/flood/") for r in rs) >= 10,
                          what="the flood under way")
    dep.publish("task.created", calm_ws, {"id": "calm"})
    dep.receiver.wait_for(lambda rs: any(r.path == f"/calm/{calm}" for r in rs),
                          what="the calm workspace's delivery")
    flood_done = sum(r.path.startswith("/flood/") for r in dep.receiver.requests)
    # Behind a FIFO of 180 half-second jobs it would have come after most of them.
    assert flood_done < total // 2, f"{flood_done} of {total} flood jobs went first"
    dep.receiver.wait_for(lambda rs: len({(json.loads(r.body)["id"], r.path) for r in rs
                                          if r.path.startswith("/flood/")}) == total,
                          timeout=90, what="every flood delivery")
    assert dep.receiver.most_in_flight["flood"] == PER_WORKSPACE
