"""streams.core.signing: HMAC-SHA256 over the exact body bytes, `sha256=` prefixed."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from streams.core import signing
from streams.core.signing import SIGNATURE_PREFIX, sign, verify

# GitHub's documented test vector for X-Hub-Signature-256.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_HEX = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

BODY = b'{"id":"evt_1","event":"task.created","data":{"id":"t"}}'
SECRET = "whsec_test_secret"


def test_known_vector() -> None:
    assert sign(GITHUB_BODY, GITHUB_SECRET) == "sha256=" + GITHUB_HEX


def test_matches_stdlib_hmac() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == SIGNATURE_PREFIX + expected


def test_signature_shape() -> None:
    signature = sign(BODY, SECRET)
    assert signature.startswith("sha256=")
    digest = signature.removeprefix("sha256=")
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_empty_body_is_signed() -> None:
    expected = hmac.new(SECRET.encode(), b"", hashlib.sha256).hexdigest()
    assert sign(b"", SECRET) == "sha256=" + expected
    assert verify(b"", sign(b"", SECRET), SECRET)


def test_verify_known_vector_with_and_without_prefix() -> None:
    assert verify(GITHUB_BODY, "sha256=" + GITHUB_HEX, GITHUB_SECRET)
    assert verify(GITHUB_BODY, GITHUB_HEX, GITHUB_SECRET)


def test_verify_accepts_own_signature() -> None:
    signature = sign(BODY, SECRET)
    assert verify(BODY, signature, SECRET)
    assert verify(BODY, signature.removeprefix("sha256="), SECRET)


def test_verify_rejects_wrong_secret() -> None:
    assert not verify(BODY, sign(BODY, SECRET), SECRET + "x")
    assert not verify(GITHUB_BODY, GITHUB_HEX, "It's a secret to everybody")


@pytest.mark.parametrize(
    "tampered",
    [BODY + b" ", BODY.replace(b"task.created", b"task.deleted"), BODY[:-1], b""],
)
def test_verify_rejects_tampered_body(tampered: bytes) -> None:
    assert not verify(tampered, sign(BODY, SECRET), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sha256=",
        "garbage",
        "sha256=garbage",
        "sha1=" + GITHUB_HEX,
        "sha256=" + GITHUB_HEX[:-1],
        "sha256=" + GITHUB_HEX + "0",
        "sha256=" + GITHUB_HEX.upper(),
        "sha256=sha256=" + GITHUB_HEX,
        "sha256=" + "é" * 64,
    ],
)
def test_verify_rejects_bad_headers(header: str) -> None:
    assert not verify(GITHUB_BODY, header, GITHUB_SECRET)


@pytest.mark.parametrize("header", [None, b"sha256=" + GITHUB_HEX.encode(), 123, ["x"]])
def test_verify_rejects_non_str_header(header: Any) -> None:
    assert verify(GITHUB_BODY, header, GITHUB_SECRET) is False


def test_verify_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify(GITHUB_BODY, "sha256=" + GITHUB_HEX, GITHUB_SECRET)
    assert not verify(GITHUB_BODY, "sha256=" + "0" * 64, GITHUB_SECRET)
    assert len(calls) == 2
    assert calls[0] == (GITHUB_HEX.encode(), GITHUB_HEX.encode())


def test_header_names() -> None:
    assert signing.SIGNATURE_HEADER == "X-Webhook-Signature"
    assert signing.WEBHOOK_ID_HEADER == "X-Webhook-ID"
    assert signing.TIMESTAMP_HEADER == "X-Webhook-Timestamp"
    assert signing.EVENT_HEADER == "X-Webhook-Event"
    assert signing.DELIVERY_HEADER == "X-Webhook-Delivery"
