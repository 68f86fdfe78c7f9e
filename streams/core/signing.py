"""Signing and verifying webhook bodies. Pure: no I/O. Receivers can import `verify` alone.

Two schemes:
- hookstream (the documentation's, default): `X-Webhook-Signature: sha256=<hex HMAC-SHA256
  (secret, body)>`; during a rotation grace, `X-Webhook-Signature-Previous` under the old one;
- standard-webhooks (opt-in, standardwebhooks.com): `webhook-signature: v1,<base64
  HMAC-SHA256(base64-decoded whsec_ key, "<id>.<timestamp>.<body>")>`, space-separated
  signatures during a rotation, verifiable with the published `standardwebhooks` libraries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SIGNATURE_HEADER = "X-Webhook-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-ID"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
EVENT_HEADER = "X-Webhook-Event"
DELIVERY_HEADER = "X-Webhook-Delivery"
PREVIOUS_SIGNATURE_HEADER = "X-Webhook-Signature-Previous"
SIGNATURE_PREFIX = "sha256="

STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"


def sign(body: bytes, secret: str) -> str:
    """The X-Webhook-Signature value: `sha256=<hex HMAC-SHA256(secret, body)>`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(body: bytes, signature_header: str, secret: str) -> bool:
    """True if `signature_header` is the signature of `body` under `secret`.

    Constant-time, so a receiver does not leak how much of a forged signature matched.
    Accepts the header with or without the `sha256=` prefix.
    """
    if not isinstance(signature_header, str):
        return False
    candidate = signature_header.strip()
    if candidate.startswith(SIGNATURE_PREFIX):
        candidate = candidate[len(SIGNATURE_PREFIX):]
    expected = sign(body, secret)[len(SIGNATURE_PREFIX):]
    return hmac.compare_digest(candidate.encode(), expected.encode())


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return secret.encode()  # not the spec's form: sign with the bytes as given


def sign_standard(message_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """One Standard Webhooks signature, `v1,<base64>`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
