"""Console sessions: the API key sealed into a cookie; CSRF tokens derived from it. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from ..secretbox import SecretBox, SecretBoxError

COOKIE = "hookstream_session"
LIFETIME_S = 8 * 3600


def seal(box: SecretBox, api_key: str, now: float | None = None) -> str:
    payload = json.dumps({"key": api_key, "exp": int((now or time.time()) + LIFETIME_S)})
    return base64.urlsafe_b64encode(box.seal(payload).encode()).decode()


def open_session(box: SecretBox, cookie: str | None, now: float | None = None) -> str | None:
    """The API key in a valid, unexpired cookie, else None."""
    if not cookie:
        return None
    try:
        payload = json.loads(box.open(base64.urlsafe_b64decode(cookie.encode()).decode()))
    except (SecretBoxError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("exp", 0) < (now or time.time()):
        return None
    key = payload.get("key")
    return key if isinstance(key, str) else None


def csrf_token(cookie: str) -> str:
    """Forms carry this; only a page that could read the HttpOnly cookie's value (ours,
    rendered by the server) can produce it."""
    return hashlib.sha256(f"csrf:{cookie}".encode()).hexdigest()[:32]


def csrf_ok(cookie: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(cookie), token or "")
