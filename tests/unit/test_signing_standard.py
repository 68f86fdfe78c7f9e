"""Standard Webhooks signing (streams.core.signing.sign_standard), checked with the published
`standardwebhooks` library, and build_request's headers for both schemes and rotations."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streams.core import signing
from streams.core.secretbox import SecretBox, SecretBoxError, generate_master_key, parse_keys
from streams.delivery.models import DeliveryJob, delivery_id_for
from streams.delivery.sender import build_request
from streams.subscriptions.commands import generate_secret
from streams.subscriptions.model import Subscription

BODY = b'{"id":"evt_1","event":"task.created","data":{"id":"task_1","name":"\xc3\xa9t\xc3\xa9"}}'
MSG_ID = "dlv_0123456789abcdef01234567"

# The worked example of the Standard Webhooks (Svix) documentation.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _now() -> int:
    """The library refuses timestamps more than 5 minutes from its clock."""
    return int(time.time())


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature}


def _verifies(secret: str | bytes, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# --- sign_standard ------------------------------------------------------------------------


def test_spec_example() -> None:
    assert signing.sign_standard(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, SPEC_SECRET) == SPEC_SIGNATURE


def test_signature_shape_and_definition() -> None:
    secret = generate_secret()
    signature = signing.sign_standard(MSG_ID, 1_700_000_000, BODY, secret)
    version, _, encoded = signature.partition(",")
    assert version == "v1"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    assert base64.b64decode(encoded, validate=True) == expected
    assert " " not in signature


def test_generated_secret_is_standard_form() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret


def test_library_verifies_a_generated_secret() -> None:
    secret = generate_secret()
    now = _now()
    headers = _headers(MSG_ID, now, signing.sign_standard(MSG_ID, now, BODY, secret))
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_library_verifies_with_header_names_in_any_case() -> None:
    secret = generate_secret()
    now = _now()
    signature = signing.sign_standard(MSG_ID, now, BODY, secret)
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(now),
               "Webhook-Signature": signature}
    assert _verifies(secret, BODY, headers)


def test_two_signatures_each_secret_verifies() -> None:
    old, new, stranger = generate_secret(), generate_secret(), generate_secret()
    now = _now()
    header = " ".join(signing.sign_standard(MSG_ID, now, BODY, s) for s in (new, old))
    headers = _headers(MSG_ID, now, header)
    assert len(header.split(" ")) == 2
    assert _verifies(new, BODY, headers)
    assert _verifies(old, BODY, headers)
    assert not _verifies(stranger, BODY, headers)


def test_wrong_secret_fails() -> None:
    now = _now()
    headers = _headers(MSG_ID, now, signing.sign_standard(MSG_ID, now, BODY, generate_secret()))
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(generate_secret()).verify(BODY, headers)


def test_anything_changed_fails() -> None:
    secret = generate_secret()
    now = _now()
    signature = signing.sign_standard(MSG_ID, now, BODY, secret)
    assert not _verifies(secret, BODY + b" ", _headers(MSG_ID, now, signature))
    assert not _verifies(secret, BODY, _headers(MSG_ID + "x", now, signature))
    assert not _verifies(secret, BODY, _headers(MSG_ID, now - 1, signature))


def test_signatures_differ_by_id_timestamp_body_and_secret() -> None:
    secret = generate_secret()
    base = signing.sign_standard(MSG_ID, 1, BODY, secret)
    assert signing.sign_standard(MSG_ID, 1, BODY, secret) == base
    assert signing.sign_standard(MSG_ID + "x", 1, BODY, secret) != base
    assert signing.sign_standard(MSG_ID, 2, BODY, secret) != base
    assert signing.sign_standard(MSG_ID, 1, BODY + b" ", secret) != base
    assert signing.sign_standard(MSG_ID, 1, BODY, generate_secret()) != base


def test_secret_not_in_spec_form_signs_with_its_bytes() -> None:
    secret = "whsec_sender_test_secret"  # '_' is not base64: used as given, prefix included
    now = _now()
    signature = signing.sign_standard(MSG_ID, now, BODY, secret)
    expected = hmac.new(secret.encode(), f"{MSG_ID}.{now}.".encode() + BODY,
                        hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(expected).decode()
    assert _verifies(secret.encode(), BODY, _headers(MSG_ID, now, signature))


def test_non_ascii_secret_signs_with_its_bytes() -> None:
    secret = "sécret-with-ünïcode-1234"
    signature = signing.sign_standard(MSG_ID, 1, BODY, secret)
    expected = hmac.new(secret.encode(), f"{MSG_ID}.1.".encode() + BODY, hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(expected).decode()


# --- build_request --------------------------------------------------------------------------------

BOX = SecretBox(parse_keys(generate_master_key("test")))
NOW_S = _now()
GRACE_UNTIL_MS = (NOW_S + 3600) * 1000


@pytest.fixture(autouse=True)
def _fresh_clock() -> None:
    """Each test reads the clock when it runs: the suite may run minutes after import, and
    the library refuses timestamps 5 minutes old."""
    global NOW_S, GRACE_UNTIL_MS
    NOW_S = _now()
    GRACE_UNTIL_MS = (NOW_S + 3600) * 1000


def _sub(secret: str, scheme: str = "hookstream", previous: str | None = None,
         until: int | None = None) -> Subscription:
    return Subscription(
        id="wh_abc", workspace_id="ws_1", url="https://example.com/hooks",
        events=("task.*",), secret=BOX.seal(secret), active=True, created_at=0, updated_at=0,
        previous_secret=None if previous is None else BOX.seal(previous),
        previous_secret_until=until, signature_scheme=scheme,
    )


JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_42", "wh_abc"), webhook_id="wh_abc", workspace_id="ws_1",
    event_id="evt_42", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json='{"id":"task_1","name":"été ✓"}', attempt=1, created_at=0,
)


def test_standard_headers() -> None:
    secret = generate_secret()
    sub = _sub(secret, "standard-webhooks")
    assert sub.secret.startswith("enc:v1:test:")
    body, headers = build_request(sub, JOB, NOW_S, BOX)
    assert headers["webhook-id"] == JOB.delivery_id
    assert headers["webhook-timestamp"] == str(NOW_S)
    assert headers["webhook-signature"].startswith("v1,")
    assert " " not in headers["webhook-signature"]
    assert signing.SIGNATURE_HEADER not in headers
    assert signing.PREVIOUS_SIGNATURE_HEADER not in headers
    assert headers["X-Webhook-Delivery"] == JOB.delivery_id
    assert headers["X-Webhook-Event"] == "task.created"
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert not _verifies(generate_secret(), body, headers)


def test_standard_id_is_stable_across_retries() -> None:
    sub = _sub(generate_secret(), "standard-webhooks")
    retry = dataclasses.replace(JOB, attempt=4)
    assert (build_request(sub, JOB, NOW_S, BOX)[1]["webhook-id"]
            == build_request(sub, retry, NOW_S + 1, BOX)[1]["webhook-id"])


def test_standard_rotation_grace_signs_with_both() -> None:
    old, new = generate_secret(), generate_secret()
    sub = _sub(new, "standard-webhooks", previous=old, until=GRACE_UNTIL_MS)
    body, headers = build_request(sub, JOB, NOW_S, BOX)
    first, second = headers["webhook-signature"].split(" ")
    assert first == signing.sign_standard(JOB.delivery_id, NOW_S, body, new)
    assert second == signing.sign_standard(JOB.delivery_id, NOW_S, body, old)
    assert _verifies(new, body, headers)
    assert _verifies(old, body, headers)
    assert not _verifies(generate_secret(), body, headers)


def test_standard_after_grace_only_the_new_secret() -> None:
    old, new = generate_secret(), generate_secret()
    sub = _sub(new, "standard-webhooks", previous=old, until=(NOW_S - 1) * 1000)
    body, headers = build_request(sub, JOB, NOW_S, BOX)
    assert " " not in headers["webhook-signature"]
    assert _verifies(new, body, headers)
    assert not _verifies(old, body, headers)


def test_hookstream_rotation_grace() -> None:
    old, new = generate_secret(), generate_secret()
    sub = _sub(new, previous=old, until=GRACE_UNTIL_MS)
    body, headers = build_request(sub, JOB, NOW_S, BOX)
    assert "webhook-signature" not in headers
    assert signing.verify(body, headers[signing.SIGNATURE_HEADER], new)
    assert not signing.verify(body, headers[signing.SIGNATURE_HEADER], old)
    previous = headers[signing.PREVIOUS_SIGNATURE_HEADER]
    assert signing.verify(body, previous, old)
    assert not signing.verify(body, previous, new)


@pytest.mark.parametrize("until_s", [NOW_S, NOW_S - 1, NOW_S - 86_400],
                         ids=["now", "a second ago", "a day ago"])
def test_hookstream_previous_signature_gone_after_grace(until_s: int) -> None:
    old, new = generate_secret(), generate_secret()
    sub = _sub(new, previous=old, until=until_s * 1000)
    body, headers = build_request(sub, JOB, NOW_S, BOX)
    assert signing.PREVIOUS_SIGNATURE_HEADER not in headers
    assert signing.verify(body, headers[signing.SIGNATURE_HEADER], new)


def test_hookstream_previous_secret_without_deadline_is_not_used() -> None:
    sub = _sub(generate_secret(), previous=generate_secret(), until=None)
    _, headers = build_request(sub, JOB, NOW_S, BOX)
    assert signing.PREVIOUS_SIGNATURE_HEADER not in headers


def test_hookstream_grace_boundary_is_exclusive() -> None:
    old, new = generate_secret(), generate_secret()
    sub = _sub(new, previous=old, until=NOW_S * 1000 + 1)
    _, headers = build_request(sub, JOB, NOW_S, BOX)
    assert signing.PREVIOUS_SIGNATURE_HEADER in headers


def test_plaintext_secrets_need_no_box() -> None:
    secret = generate_secret()
    sub = dataclasses.replace(_sub(secret, "standard-webhooks"), secret=secret)
    body, headers = build_request(sub, JOB, NOW_S)
    assert _verifies(secret, body, headers)


def test_sealed_under_unknown_master_key() -> None:
    sub = _sub(generate_secret(), "standard-webhooks")
    other = SecretBox(parse_keys(generate_master_key("other")))
    with pytest.raises(SecretBoxError, match="unknown master key 'test'"):
        build_request(sub, JOB, NOW_S, other)


def test_standard_scheme_with_non_ascii_secret_does_not_crash() -> None:
    sub = _sub("sécret-with-ünïcode-1234", "standard-webhooks")
    _, headers = build_request(sub, JOB, NOW_S, BOX)
    assert headers["webhook-signature"].startswith("v1,")
