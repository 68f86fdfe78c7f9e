"""streams.delivery.sender: the signed body and headers (no HTTP), and what an attempt keeps
of a receiver's answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from streams.core import signing
from streams.core.payload import webhook_body
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.sender import attempt, build_request
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


class _Answering:
    """A DeliveryClient whose every post gets `answer`."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code, self.body = code, body

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   keep: int) -> tuple[int, bytes, str | None]:
        return self.code, self.body[:keep], None


@given(st.binary(max_size=300))
def test_a_receivers_words_in_an_error_are_inert(body: bytes) -> None:
    # Its body's first bytes go into the attempt record and the dead-letter agent's log
    # line: raw CR/LF forged log lines in text logs; C1 controls and U+2028 passed JSON's.
    outcome = asyncio.run(attempt(
        _Answering(500, body), SUB, JOB, timeout=5, allow_insecure=False))  # type: ignore[arg-type]
    assert outcome.error is not None and outcome.error.startswith("HTTP 500")
    assert outcome.error.isprintable(), outcome.error


def test_a_forged_log_line_stays_on_its_line() -> None:
    outcome = asyncio.run(attempt(
        _Answering(503, b"busy\r\nFAKE level=error \x1b]0;pwned\x07 \xc2\x85\xe2\x80\xa8"), SUB,
        JOB, timeout=5, allow_insecure=False))  # type: ignore[arg-type]
    assert outcome.error == "HTTP 503: busy FAKE level=error \\x1b]0;pwned\\x07"
