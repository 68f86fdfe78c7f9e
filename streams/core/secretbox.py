"""Webhook secrets at rest: sealed with AES-256-GCM under a master key, with its key id.

A sealed secret reads `enc:v1:<key id>:<base64(nonce | ciphertext)>`; the key id is also the
associated data, so a ciphertext cannot be moved under another key. HOOKSTREAM_MASTER_KEY
lists keys as `<id>:<base64 32 bytes>[,<id>:<key>...]`: the first seals, all open, so a
master key is rotated by putting a new one first and keeping the old until every secret was
re-sealed (rotate-secret). Without the variable, a key is created once in
$HOOKSTREAM_HOME/master.key (mode 0600) for development.

The master box seals webhook secrets only. Anything else sealed under the master key gets a
box of its own from `derive(label)`: HKDF-SHA256 turns each master key into an independent
key per label, under the same key id, so one purpose's ciphertext never opens as another's
(a console session is not a webhook secret) and master-key rotation carries over unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
#: Secrets the master box keeps opened, the most recently used: a webhook's sealed secret
#: and header values are opened on every delivery (AES-GCM and base64, a few percent of a
#: loaded worker in py-spy). Only what opened is kept, so nobody without the key can fill
#: it. Boxes derived for other purposes keep nothing: their values are not reopened.
OPENED_KEPT = 4096


class SecretBoxError(ValueError):
    """A key or sealed secret we cannot use; the message says which."""


def generate_master_key(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    keys = []
    for item in spec.split(","):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not key_id:
            raise SecretBoxError("HOOKSTREAM_MASTER_KEY must be <id>:<base64 key>[,...]")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII text
            raise SecretBoxError(f"master key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise SecretBoxError(f"master key {key_id!r} must be 32 bytes, got {len(key)}")
        keys.append((key_id, key))
    return keys


def derive_key(key: bytes, label: str) -> bytes:
    """HKDF-SHA256 of a master key with `label` as its info: 32 bytes for one purpose.

    No salt: master keys are already uniformly random (RFC 5869, 3.1). Changing this
    function makes everything sealed by derived boxes unreadable; a test pins it.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=label.encode()).derive(key)


class SecretBox:
    def __init__(self, keys: list[tuple[str, bytes]], *, keep_opened: int = OPENED_KEPT) -> None:
        if not keys:
            raise SecretBoxError("no master key")
        self._keys = list(keys)
        self._active_id, active = keys[0]
        self._active = AESGCM(active)
        self._by_id = {key_id: AESGCM(key) for key_id, key in keys}
        self._open_kept: Callable[[str], str] = (
            functools.lru_cache(maxsize=keep_opened)(self._open) if keep_opened else self._open)

    @classmethod
    def from_env(cls, spec: str | None, home: Path) -> SecretBox:
        if spec:
            return cls(parse_keys(spec))
        path = home / "master.key"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(generate_master_key("dev"))
        return cls(parse_keys(path.read_text().strip()))

    def derive(self, label: str) -> SecretBox:
        """A box for one purpose: each key replaced by its HKDF derivation for `label`.

        Key ids stay as they are, so the first key still seals and every key still opens.
        """
        if not label:
            raise SecretBoxError("a derived box needs a label")
        return SecretBox([(key_id, derive_key(key, label)) for key_id, key in self._keys],
                         keep_opened=0)

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._active.encrypt(nonce, plaintext.encode(), self._active_id.encode())
        return f"{PREFIX}{self._active_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str) -> str:
        return self._open_kept(sealed)

    def _open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            raise SecretBoxError("not a sealed secret")
        key_id, _, payload = sealed[len(PREFIX):].partition(":")
        box = self._by_id.get(key_id)
        if box is None:
            raise SecretBoxError(f"sealed under unknown master key {key_id!r}")
        try:
            raw = base64.b64decode(payload, validate=True)
            if len(raw) < 12 + 16:  # nonce + GCM tag
                raise ValueError("too short")
            return box.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError):  # UnicodeDecodeError is a ValueError
            raise SecretBoxError("sealed secret does not open under its key") from None

    def seal_if_plain(self, secret: str) -> str:
        return secret if is_sealed(secret) else self.seal(secret)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)
