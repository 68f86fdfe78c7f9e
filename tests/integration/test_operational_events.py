"""Operational events end to end: a real worker, the broker, real receivers.

Workspace ws has webhook A, whose endpoint always fails, and webhook B, healthy, subscribed
to `webhook.*` and `delivery.*`. A subscribes to them too, and to `task.*`. Three task
events give A twelve attempts at most (three each, one second apart, with a failure limit
of 10): B is told, signed like any delivery, that A is failing (at 5 and 9 failures in a
row), that a delivery to A was dead-lettered, and that A was disabled; A is never sent an
event about itself.
"""

from __future__ import annotations

import json
import uuid

import pytest

from streams.core.signing import verify
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.operations import limit_reason
from streams.kafka import topics

from ..support.kafka import read_to_end
from ..support.pipeline import SECRET, Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

LIMIT = 10
DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_RETRY_DELAYS": "1,1,1",
                                      "HOOKSTREAM_DELIVERY_TIMEOUT": "2",
                                      "HOOKSTREAM_FAILURE_LIMIT": str(LIMIT)}}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def test_a_healthy_webhook_is_told_signed_of_a_failing_one_which_hears_nothing_of_itself(
        dep: Deployment) -> None:
    ws, a, b = f"ws_{_uid()}", f"wh_a_{_uid()}", f"wh_b_{_uid()}"
    a_path, b_path = f"/a/{a}", f"/b/{b}"
    dep.receiver.status[a_path] = 500
    dep.create_webhook(a, ws, a_path, ["task.*", "webhook.*", "delivery.*"])
    dep.create_webhook(b, ws, b_path, ["webhook.*", "delivery.*"])
    for webhook in (a, b):
        wait_webhook_state(dep, webhook, {"active": True})
    published = [dep.publish("task.created", ws, {"id": f"t{i}"}) for i in range(3)]

    def news() -> list[dict[str, object]]:
        return [json.loads(r.body) for r in dep.receiver.at(b_path)]

    def told(received: list[object]) -> bool:
        seen = news()
        failing = {n["data"]["consecutive_failures"] for n in seen  # type: ignore[index]
                   if n["event"] == "webhook.failing"}
        return failing >= {5, 9} and {"delivery.dead_lettered", "webhook.disabled"} <= {
            n["event"] for n in seen}

    dep.receiver.wait_for(told, timeout=60, what="B told of A's failures, dead letter, disable")
    wait_webhook_state(dep, a, {"active": False})

    # B: every delivery signed with its secret, about A, of the workspace.
    for request in dep.receiver.at(b_path):
        assert verify(request.body, request.headers["x-webhook-signature"], SECRET)
        body = json.loads(request.body)
        assert request.headers["x-webhook-event"] == body["event"]
        assert request.headers["x-webhook-delivery"] == delivery_id_for(body["id"], b)
        assert (body["webhook_id"], body["data"]["webhook_id"]) == (b, a)
    by_type: dict[str, list[dict[str, object]]] = {}
    for body in news():
        by_type.setdefault(str(body["event"]), []).append(body)
    assert sorted(n["data"]["consecutive_failures"]  # type: ignore[index]
                  for n in by_type["webhook.failing"]) == [5, 9]
    for failing in by_type["webhook.failing"]:
        data = failing["data"]
        assert data["last_response_code"] == 500  # type: ignore[index]
        assert data["last_error"].startswith("HTTP 500")  # type: ignore[index]
    for dead in by_type["delivery.dead_lettered"]:
        data = dead["data"]
        assert data["event_id"] in published and data["attempts"] == 4  # type: ignore[index]
        assert data["reason"] == "attempts_exhausted"  # type: ignore[index]
        assert data["last_response_code"] == 500  # type: ignore[index]
    # Both the failure limit (the stage) and the dead letter (its agent) may disable A; one
    # version of A disabled is one event, so every copy has one delivery id.
    disabled = by_type["webhook.disabled"]
    assert len({d["id"] for d in disabled}) == 1
    reasons = {d["data"]["reason"] for d in disabled}  # type: ignore[index]
    assert reasons <= {limit_reason(LIMIT), *(
        f"auto: delivery {delivery_id_for(e, a)} dead-lettered after 4 attempts"
        for e in published)}

    # A: only its own task events reached it, and no job was ever made for it of news
    # about itself (the jobs of each event are made together: B's news is there, so would
    # A's be).
    assert {r.headers["x-webhook-event"] for r in dep.receiver.at(a_path)} == {"task.created"}
    assert len(dep.receiver.at(a_path)) <= 3 * 4
    jobs = [DeliveryJob.decode(m.value()) for m in
            read_to_end(dep.settings.bootstrap_servers, dep.settings.topic(topics.DELIVERIES))]
    assert {j.event_type for j in jobs if j.webhook_id == a} == {"task.created"}
    assert {j.event_type for j in jobs if j.webhook_id == b} == {
        "webhook.failing", "webhook.disabled", "delivery.dead_lettered"}
