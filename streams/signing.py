"""Signing and verifying webhook bodies: HMAC-SHA256 over the exact body bytes.

Pure: no I/O. Receivers can import `verify` alone.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Webhook-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-ID"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
EVENT_HEADER = "X-Webhook-Event"
DELIVERY_HEADER = "X-Webhook-Delivery"
SIGNATURE_PREFIX = "sha256="


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
