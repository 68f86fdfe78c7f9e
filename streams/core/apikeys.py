"""API keys: `hsk_<key id>_<secret>`, stored only as a SHA-256 hash. Pure.

A key belongs to one workspace. The admin key (HOOKSTREAM_ADMIN_KEY) acts on every
workspace and is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from .schemas import API_KEY, SchemaError, registry
from .timeutil import to_ms

PREFIX = "hsk_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    workspace_id: str
    hash: str
    created_at: int
    description: str | None = None
    revoked_at: int | None = None

    def encode(self) -> bytes:
        return registry().encode(API_KEY, dict(self.__dict__))

    @classmethod
    def decode(cls, payload: bytes) -> ApiKey:
        r: dict[str, Any] = registry().decode(API_KEY, payload)
        try:
            r["created_at"] = to_ms(r["created_at"])
            if r["revoked_at"] is not None:
                r["revoked_at"] = to_ms(r["revoked_at"])
        except (OverflowError, TypeError) as exc:
            raise SchemaError(f"not a valid ApiKey: {exc}") from exc
        return cls(**r)


@dataclass(frozen=True)
class Principal:
    """Who is calling: one workspace, or the admin (workspace None)."""

    key_id: str
    workspace_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    def may_see(self, workspace_id: str) -> bool:
        return self.is_admin or self.workspace_id == workspace_id


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(workspace_id: str, now_ms: int, description: str | None = None) -> tuple[str, ApiKey]:
    """A new key (shown once) and the record to store."""
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(key_id, workspace_id, digest(key), now_ms, description)


def key_id_of(key: str) -> str | None:
    """The id part of something shaped like our keys (ids are hex: `new_key`), else None;
    never a caller's odd text, which the failure log would repeat."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, _ = key[len(PREFIX):].partition("_")
    return key_id if sep and key_id and key_id.isascii() and key_id.isalnum() else None


def authenticate(key: str, stored: dict[str, ApiKey], admin_key: str | None) -> Principal | None:
    """The caller of `key`, or None. Comparisons are constant-time."""
    try:
        offered = key.encode()
    except UnicodeEncodeError:
        # A header's non-UTF-8 byte arrives as a lone surrogate: no key has one.
        return None
    if admin_key and hmac.compare_digest(offered, admin_key.encode()):
        return Principal("admin", None)
    key_id = key_id_of(key)
    record = stored.get(key_id) if key_id else None
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(digest(key), record.hash):
        return None
    return Principal(record.key_id, record.workspace_id)
