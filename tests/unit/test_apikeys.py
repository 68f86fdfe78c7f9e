"""streams.core.apikeys: key format, hash-only records, authentication, principals."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.apikeys import (
    PREFIX,
    ApiKey,
    Principal,
    authenticate,
    digest,
    key_id_of,
    new_key,
)

NOW_MS = 1_760_437_800_123
ADMIN = "admin-key-for-tests-0123456789"
KEY_FORMAT = re.compile(r"hsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def _stored(*records: ApiKey) -> dict[str, ApiKey]:
    return {r.key_id: r for r in records}


def test_new_key_format() -> None:
    key, record = new_key("ws_1", NOW_MS, "ci key")
    match = KEY_FORMAT.fullmatch(key)
    assert match is not None, key
    assert key.startswith(PREFIX)
    assert record.key_id == match.group(1)
    assert record.workspace_id == "ws_1"
    assert record.created_at == NOW_MS
    assert record.description == "ci key"
    assert record.revoked_at is None


def test_new_keys_differ() -> None:
    keys = [new_key("ws_1", NOW_MS) for _ in range(10)]
    assert len({k for k, _ in keys}) == 10
    assert len({r.key_id for _, r in keys}) == 10


def test_record_stores_only_the_hash() -> None:
    key, record = new_key("ws_1", NOW_MS)
    assert record.hash == hashlib.sha256(key.encode()).hexdigest() == digest(key)
    encoded = record.encode()
    secret_part = key.split("_", 2)[2]
    assert key.encode() not in encoded
    assert secret_part.encode() not in encoded
    assert record.hash.encode() in encoded
    assert key not in repr(record)


@pytest.mark.parametrize(("key", "key_id"), [
    ("hsk_abc123_secret", "abc123"),
    ("hsk_abc123_sec_ret_with_underscores", "abc123"),
    ("hsk_abc123_", "abc123"),
    ("hsk__secret", None),
    ("hsk_abc123", None),
    ("hsk_", None),
    ("abc123_secret", None),
    ("HSK_abc123_secret", None),
    ("", None),
    ("hsk_\udce9_secret", None),  # a header's non-UTF-8 byte, as the server decodes it
    ("hsk_ab\u0663_secret", None),  # a non-ASCII digit
    ("hsk_a.b_secret", None),
])
def test_key_id_of(key: str, key_id: str | None) -> None:
    assert key_id_of(key) == key_id


# --- authenticate -------------------------------------------------------------------------------


def test_right_key_authenticates_to_its_workspace() -> None:
    key, record = new_key("ws_1", NOW_MS)
    principal = authenticate(key, _stored(record), ADMIN)
    assert principal == Principal(record.key_id, "ws_1")
    assert principal is not None
    assert not principal.is_admin


def test_right_key_without_admin_key_configured() -> None:
    key, record = new_key("ws_1", NOW_MS)
    assert authenticate(key, _stored(record), None) == Principal(record.key_id, "ws_1")


def test_each_key_finds_its_own_workspace() -> None:
    key1, rec1 = new_key("ws_1", NOW_MS)
    key2, rec2 = new_key("ws_2", NOW_MS)
    stored = _stored(rec1, rec2)
    p1 = authenticate(key1, stored, ADMIN)
    p2 = authenticate(key2, stored, ADMIN)
    assert p1 is not None and p1.workspace_id == "ws_1"
    assert p2 is not None and p2.workspace_id == "ws_2"


def test_wrong_secret_part() -> None:
    key, record = new_key("ws_1", NOW_MS)
    secret_part = key.split("_", 2)[2]
    other_secret = ("A" if secret_part[0] != "A" else "B") + secret_part[1:]
    forged = f"{PREFIX}{record.key_id}_{other_secret}"
    assert authenticate(forged, _stored(record), ADMIN) is None
    assert authenticate(key + "x", _stored(record), ADMIN) is None
    assert authenticate(key[:-1], _stored(record), ADMIN) is None


def test_another_keys_secret_under_this_id() -> None:
    _, rec1 = new_key("ws_1", NOW_MS)
    key2, rec2 = new_key("ws_2", NOW_MS)
    forged = f"{PREFIX}{rec1.key_id}_{key2.split('_', 2)[2]}"
    assert authenticate(forged, _stored(rec1, rec2), ADMIN) is None


def test_unknown_key_id() -> None:
    key, record = new_key("ws_1", NOW_MS)
    assert authenticate(key, {}, ADMIN) is None
    other_key, _ = new_key("ws_1", NOW_MS)
    assert authenticate(other_key, _stored(record), ADMIN) is None


def test_revoked_key() -> None:
    key, record = new_key("ws_1", NOW_MS)
    revoked = dataclasses.replace(record, revoked_at=NOW_MS + 1)
    assert authenticate(key, _stored(revoked), ADMIN) is None


@pytest.mark.parametrize("key", ["", "garbage", "hsk_", "hsk__", "Bearer x", "hsk_é_ü", "\x00",
                                 "\udce9", "hsk_\udce9_x", ADMIN + "\udce9"])
def test_malformed_keys(key: str) -> None:
    _, record = new_key("ws_1", NOW_MS)
    assert authenticate(key, _stored(record), ADMIN) is None


@given(st.text(st.characters(exclude_categories=())))  # surrogates too
def test_any_text_is_a_caller_or_none_never_an_error(key: str) -> None:
    # Lone surrogates included: what an Authorization header's non-UTF-8 bytes become.
    real, record = new_key("ws_1", NOW_MS)
    assert authenticate(key, _stored(record), ADMIN) is None
    assert authenticate(real + key, _stored(record), ADMIN) in (
        None, Principal(record.key_id, "ws_1"))


def test_admin_key() -> None:
    principal = authenticate(ADMIN, {}, ADMIN)
    assert principal == Principal("admin", None)
    assert principal is not None
    assert principal.is_admin
    assert principal.workspace_id is None
    assert principal.may_see("ws_1")
    assert principal.may_see("any_workspace")


def test_admin_key_must_match_exactly() -> None:
    assert authenticate(ADMIN + "x", {}, ADMIN) is None
    assert authenticate(ADMIN[:-1], {}, ADMIN) is None
    assert authenticate(ADMIN.upper(), {}, ADMIN) is None


def test_no_admin_when_none_configured() -> None:
    assert authenticate("", {}, None) is None
    assert authenticate("", {}, "") is None
    assert authenticate(ADMIN, {}, None) is None


def test_workspace_principal_sees_only_its_own() -> None:
    principal = Principal("abc", "ws_1")
    assert not principal.is_admin
    assert principal.may_see("ws_1")
    assert not principal.may_see("ws_2")
    assert not principal.may_see("")
    assert not principal.may_see("WS_1")


# --- ApiKey encode/decode -------------------------------------------------------------------------


@pytest.mark.parametrize("revoked_at", [None, NOW_MS + 60_000])
@pytest.mark.parametrize("description", [None, "deploy key ✓"])
def test_encode_decode_round_trip(revoked_at: int | None, description: str | None) -> None:
    _, record = new_key("ws_1", NOW_MS, description)
    record = dataclasses.replace(record, revoked_at=revoked_at)
    decoded = ApiKey.decode(record.encode())
    assert decoded == record
    assert isinstance(decoded.created_at, int)
    assert decoded.revoked_at is None or isinstance(decoded.revoked_at, int)


def test_decoded_record_still_authenticates() -> None:
    key, record = new_key("ws_9", NOW_MS)
    decoded = ApiKey.decode(record.encode())
    assert authenticate(key, _stored(decoded), None) == Principal(record.key_id, "ws_9")
