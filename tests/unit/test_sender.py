"""streams.delivery.sender.build_request: the signed body and headers (no HTTP)."""

from __future__ import annotations

import json
from dataclasses import replace

from streams.core import signing
from streams.core.payload import webhook_body
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.sender import build_request
from streams.subscriptions.model import Subscription

SUB = Subscription(
    id="wh_123", workspace_id="ws_1", url="https://example.com/hooks", events=("task.*",),
    secret="whsec_sender_test_secret", active=True, created_at=0, updated_at=0,
)
JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_9", "wh_123"), webhook_id="wh_123", workspace_id="ws_1",
    event_id="evt_9", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json='{"id":"task_789","name":"Design homepage","due_date":"2025-10-30"}', attempt=1,
    created_at=0,
)
NOW_S = 1_760_437_800


def test_body() -> None:
    body, _ = build_request(SUB, JOB, NOW_S)
    assert body == webhook_body("evt_9", "task.created", "2025-10-14T10:30:00Z", "wh_123",
                                JOB.data_json)
    parsed = json.loads(body)
    assert parsed["webhook_id"] == SUB.id
    assert parsed["data"] == json.loads(JOB.data_json)


def test_headers() -> None:
    _, headers = build_request(SUB, JOB, NOW_S)
    assert set(headers) == {
        "Content-Type", "X-Webhook-Signature", "X-Webhook-ID", "X-Webhook-Timestamp",
        "X-Webhook-Event", "X-Webhook-Delivery",
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-ID"] == "wh_123"
    assert headers["X-Webhook-Timestamp"] == "1760437800"
    assert headers["X-Webhook-Event"] == "task.created"
    assert headers["X-Webhook-Delivery"] == JOB.delivery_id
    assert all(isinstance(v, str) for v in headers.values())


def test_signature_verifies_with_the_subscription_secret() -> None:
    body, headers = build_request(SUB, JOB, NOW_S)
    signature = headers["X-Webhook-Signature"]
    assert signature.startswith("sha256=")
    assert signing.verify(body, signature, SUB.secret)
    assert not signing.verify(body, signature, "whsec_another_secret")
    assert not signing.verify(body + b" ", signature, SUB.secret)


def test_rotated_secret_changes_signature_only() -> None:
    rotated = replace(SUB, secret="whsec_rotated_secret")
    body1, h1 = build_request(SUB, JOB, NOW_S)
    body2, h2 = build_request(rotated, JOB, NOW_S)
    assert body1 == body2
    assert h1["X-Webhook-Signature"] != h2["X-Webhook-Signature"]
    assert signing.verify(body2, h2["X-Webhook-Signature"], "whsec_rotated_secret")


def test_deterministic_across_retries() -> None:
    retry = DeliveryJob(**{**JOB.__dict__, "attempt": 3, "due_at": 123})
    assert build_request(SUB, JOB, NOW_S)[0] == build_request(SUB, retry, NOW_S + 600)[0]
    assert (build_request(SUB, retry, NOW_S)[1]["X-Webhook-Delivery"]
            == build_request(SUB, JOB, NOW_S)[1]["X-Webhook-Delivery"])
