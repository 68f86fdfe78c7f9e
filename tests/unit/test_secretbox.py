"""streams.core.secretbox: AES-256-GCM sealing of webhook secrets, key ids, rotation, key files,
and boxes derived per purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from streams.core.secretbox import (
    OPENED_KEPT,
    PREFIX,
    SecretBox,
    SecretBoxError,
    derive_key,
    generate_master_key,
    is_sealed,
    parse_keys,
)

SECRET = "whsec_c2VjcmV0IHRoYXQgbmVlZHMgc2VhbGluZyBub3c="


def _key(fill: int) -> bytes:
    return bytes([fill]) * 32


def _spec(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


def _box(*specs: str) -> SecretBox:
    return SecretBox(parse_keys(",".join(specs)))


def _payload(sealed: str) -> bytes:
    """nonce | ciphertext | tag of a sealed secret."""
    return base64.b64decode(sealed.rsplit(":", 1)[1])


def _with_payload(sealed: str, raw: bytes) -> str:
    return sealed.rsplit(":", 1)[0] + ":" + base64.b64encode(raw).decode()


# --- seal / open -----------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [SECRET, "x", "", "ünïcødé sécret ✓", "a" * 10_000])
def test_round_trip(plaintext: str) -> None:
    box = _box(_spec("k1", _key(1)))
    assert box.open(box.seal(plaintext)) == plaintext


def test_sealed_form_names_the_key_id() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = box.seal(SECRET)
    assert sealed.startswith("enc:v1:k1:")
    assert sealed.startswith(PREFIX)
    assert SECRET not in sealed
    raw = _payload(sealed)
    # 12-byte nonce, the ciphertext (same length as the plaintext), a 16-byte GCM tag.
    assert len(raw) == 12 + len(SECRET.encode()) + 16


def test_each_seal_uses_a_fresh_nonce() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = {box.seal(SECRET) for _ in range(20)}
    assert len(sealed) == 20
    assert len({_payload(s)[:12] for s in sealed}) == 20
    assert all(box.open(s) == SECRET for s in sealed)


def test_generated_master_key_parses() -> None:
    spec = generate_master_key("main")
    [(key_id, key)] = parse_keys(spec)
    assert key_id == "main"
    assert len(key) == 32
    assert generate_master_key() != generate_master_key()
    assert generate_master_key().startswith("k1:")


# --- rotation ---------------------------------------------------------------------------


def test_rotation_new_key_seals_old_key_still_opens() -> None:
    old = _box(_spec("old", _key(1)))
    sealed_old = old.seal(SECRET)

    rotated = _box(_spec("new", _key(2)), _spec("old", _key(1)))
    sealed_new = rotated.seal(SECRET)
    assert sealed_new.startswith("enc:v1:new:")
    assert rotated.open(sealed_old) == SECRET
    assert rotated.open(sealed_new) == SECRET

    # The old box alone does not know the new key.
    with pytest.raises(SecretBoxError, match="unknown master key 'new'"):
        old.open(sealed_new)


def test_key_list_tolerates_spaces_around_items() -> None:
    box = SecretBox(parse_keys(f" {_spec('a', _key(1))} , {_spec('b', _key(2))} "))
    assert box.seal("s").startswith("enc:v1:a:")


def test_empty_key_list_is_refused() -> None:
    with pytest.raises(SecretBoxError, match="no master key"):
        SecretBox([])


# --- opening what should not open -----------------------------------------------------------


def test_unknown_key_id() -> None:
    sealed = _box(_spec("k1", _key(1))).seal(SECRET)
    with pytest.raises(SecretBoxError, match="unknown master key 'k1'"):
        _box(_spec("k2", _key(1))).open(sealed)


def test_wrong_key_under_same_id() -> None:
    sealed = _box(_spec("k1", _key(1))).seal(SECRET)
    with pytest.raises(SecretBoxError, match="does not open"):
        _box(_spec("k1", _key(2))).open(sealed)


@pytest.mark.parametrize("position", [0, 11, 12, 20, -1])
def test_tampered_ciphertext(position: int) -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = box.seal(SECRET)
    raw = bytearray(_payload(sealed))
    raw[position] ^= 0x01
    with pytest.raises(SecretBoxError, match="does not open"):
        box.open(_with_payload(sealed, bytes(raw)))


def test_opened_secrets_are_kept_and_a_tampered_copy_still_fails() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = box.seal(SECRET)
    assert box.open(sealed) == SECRET
    raw = bytearray(_payload(sealed))
    raw[-1] ^= 0x01
    with pytest.raises(SecretBoxError, match="does not open"):
        box.open(_with_payload(sealed, bytes(raw)))  # not the kept one: its own bytes
    assert box.open(sealed) == SECRET


def test_more_secrets_than_are_kept_each_open_as_their_own() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = {f"secret {n}": box.seal(f"secret {n}") for n in range(OPENED_KEPT + 10)}
    for _ in range(2):
        assert {plain: box.open(s) for plain, s in sealed.items()} == {p: p for p in sealed}


def test_truncated_tag() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = box.seal(SECRET)
    with pytest.raises(SecretBoxError):
        box.open(_with_payload(sealed, _payload(sealed)[:-1]))


def test_payload_that_is_not_base64() -> None:
    box = _box(_spec("k1", _key(1)))
    with pytest.raises(SecretBoxError, match="does not open"):
        box.open("enc:v1:k1:not*base64!")


def test_ciphertext_moved_to_another_key_id() -> None:
    # Both ids hold the SAME key: only the associated data (the key id) tells them apart.
    box = _box(_spec("k1", _key(7)), _spec("k2", _key(7)))
    sealed = box.seal(SECRET)
    assert sealed.startswith("enc:v1:k1:")
    moved = "enc:v1:k2:" + sealed.removeprefix("enc:v1:k1:")
    with pytest.raises(SecretBoxError, match="does not open"):
        box.open(moved)


def test_open_refuses_plain_text() -> None:
    box = _box(_spec("k1", _key(1)))
    with pytest.raises(SecretBoxError, match="not a sealed secret"):
        box.open(SECRET)


@pytest.mark.parametrize("sealed", ["enc:v1:k1:", "enc:v1:k1:AAAA"])
def test_truncated_payload_is_a_secretbox_error(sealed: str) -> None:
    box = _box(_spec("k1", _key(1)))
    with pytest.raises(SecretBoxError):
        box.open(sealed)


def test_non_ascii_payload_is_a_secretbox_error() -> None:
    box = _box(_spec("k1", _key(1)))
    with pytest.raises(SecretBoxError):
        box.open("enc:v1:k1:é")


# --- derived boxes ---------------------------------------------------------------------------

SESSIONS = "hookstream console session v1"


def _rfc5869(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 with no salt, written out from RFC 5869 (independent of `cryptography`)."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm, counter = okm + block, counter + 1
    return okm[:length]


def test_rfc5869_helper_matches_the_rfc_vector() -> None:
    # RFC 5869 A.3: SHA-256, zero-length salt and info (a zero-length salt is HashLen zeros).
    ikm = bytes.fromhex("0b" * 22)
    expected = ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                "9d201395faa4b61a96c8")
    assert _rfc5869(ikm, b"", 42).hex() == expected


def test_derived_key_is_hkdf_sha256_of_the_master_key_with_the_label_as_info() -> None:
    # Pinned: changing the derivation would make every derived ciphertext unreadable.
    assert derive_key(_key(1), SESSIONS) == _rfc5869(_key(1), SESSIONS.encode())
    derived = _box(_spec("k1", _key(1))).derive(SESSIONS)
    by_hand = SecretBox([("k1", _rfc5869(_key(1), SESSIONS.encode()))])
    assert by_hand.open(derived.seal(SECRET)) == SECRET
    assert derived.open(by_hand.seal(SECRET)) == SECRET


def test_derived_box_round_trips_and_keeps_the_key_id() -> None:
    derived = _box(_spec("k1", _key(1))).derive(SESSIONS)
    sealed = derived.seal(SECRET)
    assert sealed.startswith("enc:v1:k1:")
    assert derived.open(sealed) == SECRET


def test_the_same_label_derives_the_same_box_in_every_process() -> None:
    # Two workers build their boxes separately from the same HOOKSTREAM_MASTER_KEY.
    one = _box(_spec("k1", _key(1))).derive(SESSIONS)
    other = _box(_spec("k1", _key(1))).derive(SESSIONS)
    assert other.open(one.seal(SECRET)) == SECRET


def test_derived_and_master_ciphertexts_do_not_open_in_each_other() -> None:
    master = _box(_spec("k1", _key(1)))
    derived = master.derive(SESSIONS)
    with pytest.raises(SecretBoxError, match="does not open"):
        master.open(derived.seal(SECRET))
    with pytest.raises(SecretBoxError, match="does not open"):
        derived.open(master.seal(SECRET))


def test_boxes_derived_with_different_labels_are_independent() -> None:
    master = _box(_spec("k1", _key(1)))
    sessions, other = master.derive(SESSIONS), master.derive("hookstream something else v1")
    with pytest.raises(SecretBoxError, match="does not open"):
        other.open(sessions.seal(SECRET))
    with pytest.raises(SecretBoxError, match="does not open"):
        sessions.open(other.seal(SECRET))
    # Labels are compared whole: a prefix or a version bump is another key.
    for near in (SESSIONS[:-1], SESSIONS + " ", SESSIONS.replace("v1", "v2")):
        with pytest.raises(SecretBoxError, match="does not open"):
            master.derive(near).open(sessions.seal(SECRET))


def test_derived_keys_differ_from_the_master_key_and_from_each_other() -> None:
    keys = {_key(1), derive_key(_key(1), SESSIONS), derive_key(_key(1), "b"),
            derive_key(_key(2), SESSIONS)}
    assert len(keys) == 4
    assert all(len(k) == 32 for k in keys)


def test_derived_boxes_follow_master_key_rotation() -> None:
    before = _box(_spec("old", _key(1))).derive(SESSIONS)
    sealed_old = before.seal(SECRET)
    after = _box(_spec("new", _key(2)), _spec("old", _key(1))).derive(SESSIONS)
    sealed_new = after.seal(SECRET)
    assert sealed_new.startswith("enc:v1:new:")
    assert after.open(sealed_old) == SECRET
    assert after.open(sealed_new) == SECRET
    with pytest.raises(SecretBoxError, match="unknown master key 'new'"):
        before.open(sealed_new)
    # The rotated master box still opens neither.
    rotated_master = _box(_spec("new", _key(2)), _spec("old", _key(1)))
    for sealed in (sealed_old, sealed_new):
        with pytest.raises(SecretBoxError, match="does not open"):
            rotated_master.open(sealed)


def test_derive_needs_a_label() -> None:
    with pytest.raises(SecretBoxError, match="needs a label"):
        _box(_spec("k1", _key(1))).derive("")


# --- parse_keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["nocolon", ":" + base64.b64encode(_key(1)).decode(), "", " ",
                                  _spec("k1", _key(1)) + ","])
def test_parse_keys_needs_id_colon_key(spec: str) -> None:
    with pytest.raises(SecretBoxError, match=r"must be <id>:<base64 key>"):
        parse_keys(spec)


@pytest.mark.parametrize("encoded", ["not base64!", "AAA", "AA=A"])
def test_parse_keys_bad_base64(encoded: str) -> None:
    with pytest.raises(SecretBoxError, match="master key 'k1' is not base64"):
        parse_keys(f"k1:{encoded}")


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_parse_keys_wrong_length(length: int) -> None:
    with pytest.raises(SecretBoxError, match=f"master key 'k1' must be 32 bytes, got {length}"):
        parse_keys(_spec("k1", b"\x01" * length))


def test_parse_keys_non_ascii_key() -> None:
    with pytest.raises(SecretBoxError, match="master key 'k1' is not base64"):
        parse_keys("k1:clé")


def test_parse_keys_keeps_order() -> None:
    keys = parse_keys(f"{_spec('b', _key(2))},{_spec('a', _key(1))}")
    assert keys == [("b", _key(2)), ("a", _key(1))]


# --- from_env ---------------------------------------------------------------------------------


def test_from_env_with_spec_does_not_touch_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    box = SecretBox.from_env(_spec("prod", _key(3)), home)
    assert box.seal("s").startswith("enc:v1:prod:")
    assert not home.exists()


def test_from_env_creates_and_reuses_master_key_file(tmp_path: Path) -> None:
    home = tmp_path / "hookstream-home"
    first = SecretBox.from_env(None, home)
    path = home / "master.key"
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    content = path.read_text()
    [(key_id, key)] = parse_keys(content.strip())
    assert key_id == "dev"
    assert len(key) == 32

    sealed = first.seal(SECRET)
    assert sealed.startswith("enc:v1:dev:")
    second = SecretBox.from_env(None, home)
    assert path.read_text() == content
    assert second.open(sealed) == SECRET


def test_from_env_empty_spec_uses_the_file(tmp_path: Path) -> None:
    sealed = SecretBox.from_env(None, tmp_path).seal(SECRET)
    assert SecretBox.from_env("", tmp_path).open(sealed) == SECRET


# --- seal_if_plain / is_sealed --------------------------------------------------------------------


def test_seal_if_plain() -> None:
    box = _box(_spec("k1", _key(1)))
    sealed = box.seal_if_plain(SECRET)
    assert is_sealed(sealed)
    assert box.seal_if_plain(sealed) == sealed
    assert box.open(box.seal_if_plain(sealed)) == SECRET


def test_seal_if_plain_leaves_other_keys_ciphertexts_alone() -> None:
    foreign = _box(_spec("other", _key(9))).seal(SECRET)
    assert _box(_spec("k1", _key(1))).seal_if_plain(foreign) == foreign


@pytest.mark.parametrize(("value", "sealed"), [
    ("enc:v1:k1:AAAA", True),
    ("enc:v1:", True),
    (SECRET, False),
    ("", False),
    ("enc:v2:k1:AAAA", False),
    ("ENC:V1:k1:AAAA", False),
    (" enc:v1:k1:AAAA", False),
])
def test_is_sealed(value: str, sealed: bool) -> None:
    assert is_sealed(value) is sealed
