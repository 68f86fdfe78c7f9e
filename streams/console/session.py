"""Console sessions: the signed-in API key sealed into a cookie, under a key of its own. Pure.

A cookie is `{"sid", "key", "exp"}` sealed (AES-256-GCM) by a box derived from the master key
for sessions only (LABEL, streams.core.secretbox.SecretBox.derive), so a session and a webhook
secret, both sealed under the same master key, never open as each other. `sid` (128 random
bits) names the session: signing out publishes it with `exp` to hookstream.console-logouts,
and a session whose sid is there is refused by every worker. `exp` (ms) ends the cookie and
also says how long its sign-out must be remembered; after that the cookie is dead anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Container
from dataclasses import dataclass

from ..core.secretbox import SecretBox, SecretBoxError

#: HKDF info of the session key. A new version of the payload gets a new label, so cookies
#: of the old shape stop opening instead of being half-understood.
LABEL = "hookstream console session v1"
COOKIE = "hookstream_session"
LIFETIME_S = 8 * 3600
#: Random bytes in a session id: 128 bits, beyond guessing, and unique across workers.
SID_BYTES = 16
_SID_CHARS = len(secrets.token_urlsafe(SID_BYTES))


@dataclass(frozen=True)
class Session:
    sid: str
    api_key: str
    expires_ms: int


def encode_cookie(sealed: str) -> str:
    """URL-safe base64 without padding: only characters a cookie carries unquoted."""
    return base64.urlsafe_b64encode(sealed.encode()).decode().rstrip("=")


def decode_cookie(cookie: str) -> str:
    """The sealed text in a cookie value (ValueError if it is not one of ours)."""
    try:
        return base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4)).decode()
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text or bytes
        raise ValueError("not a session cookie") from None


class Sessions:
    """Starts and opens sessions. Takes the master box and derives its own from it, so no
    caller can seal a session under the key of webhook secrets by mistake."""

    def __init__(self, master: SecretBox) -> None:
        self._box = master.derive(LABEL)

    def start(self, api_key: str, now_ms: int) -> tuple[Session, str]:
        """A new session (new sid) for `api_key`, and its cookie value."""
        started = Session(secrets.token_urlsafe(SID_BYTES), api_key,
                          now_ms + LIFETIME_S * 1000)
        payload = json.dumps({"sid": started.sid, "key": started.api_key,
                              "exp": started.expires_ms})
        return started, encode_cookie(self._box.seal(payload))

    def open(self, cookie: str | None, now_ms: int,
             signed_out: Container[str]) -> Session | None:
        """The session in a cookie we sealed, unexpired and not signed out; else None."""
        if not cookie:
            return None
        try:
            payload = json.loads(self._box.open(decode_cookie(cookie)))
        except (SecretBoxError, ValueError):  # json's errors are ValueErrors
            return None
        if not isinstance(payload, dict):
            return None
        sid, key, exp = payload.get("sid"), payload.get("key"), payload.get("exp")
        if not (isinstance(sid, str) and len(sid) >= _SID_CHARS and isinstance(key, str)
                and type(exp) is int):
            return None
        if exp <= now_ms or sid in signed_out:
            return None
        return Session(sid, key, exp)


def cookie_secure(setting: bool | None, request_is_https: bool) -> bool:
    """The session cookie's `Secure`: as configured, or (None) as the request came."""
    return request_is_https if setting is None else setting


def csrf_token(cookie: str) -> str:
    """Forms carry this; only a page that could read the HttpOnly cookie's value (ours,
    rendered by the server) can produce it."""
    return hashlib.sha256(f"csrf:{cookie}".encode()).hexdigest()[:32]


def csrf_ok(cookie: str, token: str | None) -> bool:
    return _matches(csrf_token(cookie), token)


def _matches(expected: str, offered: str | None) -> bool:
    """A token a browser sent against ours, in constant time; as bytes, because
    compare_digest refuses str with non-ASCII characters (a 500 before)."""
    return bool(offered) and hmac.compare_digest(
        expected.encode(), (offered or "").encode("utf-8", "backslashreplace"))


def flash_mac(csrf: str, message: str) -> str:
    """A flash message's proof that this console wrote it, for this session: a link from
    anywhere else cannot put its words ("session expired, sign in at evil.example") on
    our page. Keyed by the session's CSRF token, which only our pages know."""
    return hmac.new(csrf.encode(), message.encode("utf-8", "backslashreplace"),
                    hashlib.sha256).hexdigest()[:32]


def flash_ok(csrf: str, message: str, mac: str | None) -> bool:
    return _matches(flash_mac(csrf, message), mac)
