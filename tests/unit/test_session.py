"""streams.console.session: sessions sealed under their own key, session ids, sign-outs."""

from __future__ import annotations

import base64
import json
import re

import pytest

from streams.console import session
from streams.console.session import Session, Sessions
from streams.core.secretbox import SecretBox, SecretBoxError, parse_keys

NOW = 1_760_000_000_000  # ms
LIFETIME_MS = session.LIFETIME_S * 1000
KEY = "hsk_abc123_thesecretpartofthekey"
WEBHOOK_SECRET = "whsec_c2VjcmV0IHRoYXQgbmVlZHMgc2VhbGluZyBub3c="
NOBODY: frozenset[str] = frozenset()


def _master(*ids_and_fills: tuple[str, int]) -> SecretBox:
    pairs = ids_and_fills or (("k1", 1),)
    return SecretBox(parse_keys(",".join(
        f"{key_id}:{base64.b64encode(bytes([fill]) * 32).decode()}"
        for key_id, fill in pairs)))


def _payload(master: SecretBox, cookie: str) -> dict[str, object]:
    opened: dict[str, object] = json.loads(
        master.derive(session.LABEL).open(session.decode_cookie(cookie)))
    return opened


# --- start / open ----------------------------------------------------------------------------


def test_a_started_session_opens() -> None:
    sessions = Sessions(_master())
    started, cookie = sessions.start(KEY, NOW)
    assert started.api_key == KEY
    assert started.expires_ms == NOW + LIFETIME_MS
    assert sessions.open(cookie, NOW, NOBODY) == started
    # Another worker builds its own Sessions from the same master key.
    assert Sessions(_master()).open(cookie, NOW + 1, NOBODY) == started


def test_the_cookie_holds_sid_key_and_expiry_sealed() -> None:
    master = _master()
    started, cookie = Sessions(master).start(KEY, NOW)
    assert KEY not in cookie and started.sid not in cookie
    assert _payload(master, cookie) == {"sid": started.sid, "key": KEY,
                                        "exp": NOW + LIFETIME_MS}


def test_the_cookie_value_needs_no_quoting() -> None:
    # Unpadded URL-safe base64: a browser stores and returns it unchanged.
    for _ in range(10):
        _, cookie = Sessions(_master()).start(KEY, NOW)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cookie), cookie


def test_session_ids_are_random_and_at_least_128_bits() -> None:
    sessions = Sessions(_master())
    sids = [sessions.start(KEY, NOW)[0].sid for _ in range(200)]
    assert len(set(sids)) == 200
    for sid in sids:
        assert len(base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))) >= 16


def test_each_sign_in_is_a_new_session() -> None:
    sessions = Sessions(_master())
    (first, cookie1), (second, cookie2) = sessions.start(KEY, NOW), sessions.start(KEY, NOW)
    assert first.sid != second.sid and cookie1 != cookie2


def test_expiry() -> None:
    sessions = Sessions(_master())
    _, cookie = sessions.start(KEY, NOW)
    assert sessions.open(cookie, NOW + LIFETIME_MS - 1, NOBODY) is not None
    assert sessions.open(cookie, NOW + LIFETIME_MS, NOBODY) is None
    assert sessions.open(cookie, NOW + LIFETIME_MS + 1, NOBODY) is None


def test_a_signed_out_session_is_refused_and_no_other() -> None:
    sessions = Sessions(_master())
    ended, cookie = sessions.start(KEY, NOW)
    kept, other = sessions.start(KEY, NOW)
    signed_out = {ended.sid: ended.expires_ms}
    assert sessions.open(cookie, NOW + 1, signed_out) is None
    assert sessions.open(other, NOW + 1, signed_out) == kept


@pytest.mark.parametrize("cookie", [None, "", "x", "not base64 at all!", "é",
                                    base64.urlsafe_b64encode(b"enc:v1:k1:AAAA").decode(),
                                    base64.urlsafe_b64encode(b"\xff\xfe").decode()])
def test_garbage_is_refused(cookie: str | None) -> None:
    assert Sessions(_master()).open(cookie, NOW, NOBODY) is None


def test_a_tampered_cookie_is_refused() -> None:
    sessions = Sessions(_master())
    _, cookie = sessions.start(KEY, NOW)
    sealed = session.decode_cookie(cookie)
    prefix, payload = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 1
    tampered = session.encode_cookie(f"{prefix}:{base64.b64encode(bytes(raw)).decode()}")
    assert sessions.open(tampered, NOW, NOBODY) is None


@pytest.mark.parametrize("payload", [
    [],
    "text",
    {"key": KEY, "exp": NOW + 1000},                         # no sid
    {"sid": "short", "key": KEY, "exp": NOW + 1000},         # a sid below 128 bits
    {"sid": "s" * 22, "exp": NOW + 1000},                    # no key
    {"sid": "s" * 22, "key": 7, "exp": NOW + 1000},
    {"sid": "s" * 22, "key": KEY},                           # no expiry
    {"sid": "s" * 22, "key": KEY, "exp": str(NOW + 1000)},
    {"sid": "s" * 22, "key": KEY, "exp": True},
    {"sid": "s" * 22, "key": KEY, "exp": float(NOW + 1000)},
])
def test_a_payload_of_the_wrong_shape_is_refused(payload: object) -> None:
    # Sealed under the right key, so only the shape check stands between it and a session.
    master = _master()
    cookie = session.encode_cookie(master.derive(session.LABEL).seal(json.dumps(payload)))
    assert Sessions(master).open(cookie, NOW, NOBODY) is None


def test_the_right_shape_sealed_under_the_right_key_opens() -> None:
    # The control for the test above.
    master = _master()
    payload = {"sid": "s" * 22, "key": KEY, "exp": NOW + 1000}
    cookie = session.encode_cookie(master.derive(session.LABEL).seal(json.dumps(payload)))
    assert Sessions(master).open(cookie, NOW, NOBODY) == Session("s" * 22, KEY, NOW + 1000)


# --- domain separation -----------------------------------------------------------------------


def test_a_cookie_of_the_old_format_sealed_with_the_master_box_is_refused() -> None:
    master = _master()
    old = json.dumps({"key": KEY, "exp": (NOW + LIFETIME_MS) // 1000})
    cookie = base64.urlsafe_b64encode(master.seal(old).encode()).decode()
    assert Sessions(master).open(cookie, NOW, NOBODY) is None


def test_a_session_payload_sealed_with_the_master_box_is_refused() -> None:
    master = _master()
    sessions = Sessions(master)
    _, genuine = sessions.start(KEY, NOW)
    payload = master.derive(session.LABEL).open(session.decode_cookie(genuine))
    assert sessions.open(session.encode_cookie(master.seal(payload)), NOW, NOBODY) is None


def test_a_webhook_secret_does_not_open_as_a_session_nor_a_session_as_a_secret() -> None:
    master = _master()
    sealed_secret = master.seal(WEBHOOK_SECRET)
    assert Sessions(master).open(session.encode_cookie(sealed_secret), NOW, NOBODY) is None
    _, cookie = Sessions(master).start(KEY, NOW)
    with pytest.raises(SecretBoxError, match="does not open"):
        master.open(session.decode_cookie(cookie))


def test_sessions_follow_master_key_rotation() -> None:
    before = Sessions(_master(("old", 1)))
    started, cookie = before.start(KEY, NOW)
    after = Sessions(_master(("new", 2), ("old", 1)))
    assert after.open(cookie, NOW, NOBODY) == started
    _, new_cookie = after.start(KEY, NOW)
    assert session.decode_cookie(new_cookie).startswith("enc:v1:new:")
    assert before.open(new_cookie, NOW, NOBODY) is None
    # Dropping the old key ends the sessions sealed under it.
    assert Sessions(_master(("new", 2))).open(cookie, NOW, NOBODY) is None


def test_another_master_key_opens_nothing() -> None:
    _, cookie = Sessions(_master(("k1", 1))).start(KEY, NOW)
    assert Sessions(_master(("k1", 2))).open(cookie, NOW, NOBODY) is None


# --- forgetting expired sign-outs ----------------------------------------------------------------


def test_forgetting_an_expired_sign_out_never_revives_its_session() -> None:
    # A sign-out is forgotten once its session expires (ExpiringView keeps what expires
    # later than now); the session is refused from then on by its own expiry.
    sessions = Sessions(_master())
    ended, cookie = sessions.start(KEY, NOW)
    for now in (ended.expires_ms - 1, ended.expires_ms, ended.expires_ms + 1):
        kept = {sid: expires for sid, expires in {ended.sid: ended.expires_ms}.items()
                if expires > now}
        assert sessions.open(cookie, now, kept) is None


# --- cookie attributes and CSRF --------------------------------------------------------------


@pytest.mark.parametrize(("setting", "https", "secure"), [
    (None, True, True), (None, False, False),
    (True, False, True), (True, True, True),
    (False, True, False), (False, False, False),
])
def test_cookie_secure(setting: bool | None, https: bool, secure: bool) -> None:
    assert session.cookie_secure(setting, https) is secure


def test_csrf_token_belongs_to_its_cookie() -> None:
    sessions = Sessions(_master())
    _, one = sessions.start(KEY, NOW)
    _, other = sessions.start(KEY, NOW)
    token = session.csrf_token(one)
    assert session.csrf_ok(one, token)
    assert not session.csrf_ok(other, token)
    assert not session.csrf_ok(one, None)
    assert not session.csrf_ok(one, "")
