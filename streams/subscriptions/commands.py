"""Control commands: decode, validate, and fold into a subscription. Pure.

`apply(current, command, now_ms)` is the whole state machine of a webhook; the control
agent only feeds it commands in order and stores what it returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from ..core import catalog, filters, headers, strictjson
from ..core.schemas import CONTROL_COMMAND, SchemaError, is_single_object, registry
from ..core.urls import UrlPolicyError, check_url
from ..settings import MAX_RATE_LIMIT
from .model import MIN_SECRET_LENGTH, Subscription

OPS = ("create", "update", "delete", "enable", "disable", "rotate_secret")
WEBHOOK_FIELDS = ("url", "events", "secret", "active", "description", "signature_scheme",
                  "headers", "filter", "rate_limit")
#: The documented X-Webhook-Signature, or the Standard Webhooks spec (opt-in).
SCHEMES = ("hookstream", "standard-webhooks")
MAX_DESCRIPTION = 500
#: An operator's reason for disabling a webhook: one line, shown in every read of it, in
#: `hookstream webhooks list` and in the console (hookstream's own reasons are shorter).
MAX_REASON = 500
MAX_COMMAND_BYTES = 64 * 1024
#: A webhook id travels in every delivery's X-Webhook-ID header and keys its topics, so it
#: is visible ASCII: a space, CR/LF or non-ASCII character there would make every delivery
#: fail to build its request.
MAX_WEBHOOK_ID = 256


#: The rule `is_valid_webhook_id` applies, in words.
WEBHOOK_ID_RULE = (f"1 to {MAX_WEBHOOK_ID} visible ASCII characters (it is sent in the "
                   "X-Webhook-ID header), not . or ..")


def is_valid_webhook_id(webhook_id: str) -> bool:
    # `.` and `..` are path segments no browser keeps, however encoded (the console's links).
    return (0 < len(webhook_id) <= MAX_WEBHOOK_ID and webhook_id not in (".", "..")
            and all("!" <= c <= "~" for c in webhook_id))


class InvalidCommand(ValueError):
    """A command that does not decode, validate or apply; the message is the reason."""


@dataclass(frozen=True)
class Command:
    op: str
    webhook_id: str
    workspace_id: str | None = None
    webhook: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    requested_at: str | None = None
    command_id: str | None = None

    def to_record(self) -> dict[str, Any]:
        fields = {name: self.webhook.get(name) for name in WEBHOOK_FIELDS}
        if fields["events"] is not None:
            fields["events"] = list(fields["events"])
        return {
            "op": self.op, "webhook_id": self.webhook_id, "workspace_id": self.workspace_id,
            "webhook": fields if self.webhook else None, "reason": self.reason,
            "requested_at": self.requested_at, "command_id": self.command_id,
        }

    def encode(self) -> bytes:
        """Avro single-object encoding, as the CLI and API write commands."""
        return registry().encode(CONTROL_COMMAND, self.to_record())


def over_limit(workspace_id: str, webhooks: int, limit: int) -> str | None:
    """Why a workspace that has `webhooks` may not create one more (None: it may).
    HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE: the API answers 409, the control agent
    quarantines a create past it."""
    if webhooks < limit:
        return None
    return (f"workspace {workspace_id} already has {webhooks} webhooks, the most it may have "
            f"({limit}); delete one first")


def generate_secret() -> str:
    """`whsec_` + base64 of 32 random bytes: the Standard Webhooks form, good for both schemes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def decode_command(payload: bytes) -> Command:
    """Decode a JSON or Avro command and check its shape (not yet its effect).

    InvalidCommand is the only exception, whatever the bytes: json.loads raises
    RecursionError on `[` nested thousands deep, and a control agent that raises stops.
    """
    try:
        return _decode_command(payload)
    except InvalidCommand:
        raise
    except Exception as exc:
        raise InvalidCommand(f"undecodable: {type(exc).__name__}: {exc}") from exc


#: What stands for a secret in a quarantined copy of a command.
REDACTED = "[redacted]"


def redacted_copy(payload: bytes) -> bytes:
    """A refused command as hookstream.invalid may keep it: without its secret.

    A producer may send a plaintext secret; the control agent seals it before storing, but
    a command it refuses would otherwise be copied verbatim to hookstream.invalid. So the
    copy is the command as JSON with every field named like a secret replaced (at any
    depth, wherever a buggy producer put it), custom headers' values too (any field whose
    name says header, whatever its shape: they hold credentials as often as not), or, for
    bytes that do not decode and mention a secret or a header anywhere, and for Avro bytes
    that do not decode (Avro carries no field names to tell by), a note of their size and
    digest instead of them. Anything else is copied as it came.
    """
    try:
        record = (registry().decode(CONTROL_COMMAND, payload) if is_single_object(payload)
                  else strictjson.loads_bytes(payload))
    except Exception:  # any bytes at all: decoding is what failed upstream
        record = None
    if isinstance(record, dict):
        cleaned = _without_secrets(record)
        if cleaned == record:
            return payload
        record = cleaned
        try:
            return json.dumps(record, ensure_ascii=False, default=str).encode(
                "utf-8", "surrogatepass")
        except (TypeError, ValueError):
            pass
    elif not is_single_object(payload) and not any(
            word in payload.lower() for word in (b"secret", b"header")):
        return payload
    digest = hashlib.sha256(payload).hexdigest()
    return json.dumps({"redacted": "a command that may hold a secret", "bytes": len(payload),
                       "sha256": digest}).encode()


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redacted(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def _redacted(name: Any, value: Any) -> Any:
    lowered = str(name).lower()
    if value is None:
        return None
    if "secret" in lowered:
        return REDACTED
    if "header" in lowered:
        # Names kept (they say what was sent), values never, whatever the shape.
        return ({k: REDACTED for k in value} if isinstance(value, dict) else REDACTED)
    return _without_secrets(value)


def _decode_command(payload: bytes) -> Command:
    if len(payload) > MAX_COMMAND_BYTES:
        raise InvalidCommand(f"command is {len(payload)} bytes, over {MAX_COMMAND_BYTES}")
    if is_single_object(payload):
        try:
            record = registry().decode(CONTROL_COMMAND, payload)
        except SchemaError as exc:
            raise InvalidCommand(str(exc)) from exc
        if record.get("webhook"):
            record["webhook"] = {k: v for k, v in record["webhook"].items() if v is not None}
            if "filter" in record["webhook"]:  # JSON text in Avro, an object in JSON commands
                try:
                    record["webhook"]["filter"] = strictjson.loads(record["webhook"]["filter"])
                except (ValueError, RecursionError) as exc:
                    raise InvalidCommand(f"field 'webhook.filter': not JSON: {exc}") from exc
    else:
        try:
            record = strictjson.loads_bytes(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidCommand(f"neither Avro single-object encoding nor JSON: {exc}") from exc
    return validate_command(record)


def _opt_str(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidCommand(f"field '{name}' must be a non-empty string")
    return value


def validate_command(record: Any) -> Command:
    if not isinstance(record, dict):
        raise InvalidCommand("command must be an object")
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidCommand(f"command cannot be stored: {exc}") from None
    unknown = set(record) - {"op", "webhook_id", "workspace_id", "webhook", "reason",
                             "requested_at", "command_id"}
    if unknown:
        raise InvalidCommand(f"unknown field '{sorted(unknown)[0]}'")
    op = record.get("op")
    if op not in OPS:
        raise InvalidCommand(f"field 'op' must be one of {', '.join(OPS)}, got {op!r}")
    webhook_id = _opt_str(record, "webhook_id")
    if webhook_id is None:
        raise InvalidCommand("field 'webhook_id' is required")
    if not is_valid_webhook_id(webhook_id):
        raise InvalidCommand(f"field 'webhook_id' must be {WEBHOOK_ID_RULE}")
    webhook = record.get("webhook") or {}
    if not isinstance(webhook, dict):
        raise InvalidCommand("field 'webhook' must be an object")
    unknown = set(webhook) - set(WEBHOOK_FIELDS)
    if unknown:
        raise InvalidCommand(f"unknown field 'webhook.{sorted(unknown)[0]}'")
    webhook = {k: v for k, v in webhook.items() if v is not None}
    _validate_fields(webhook)
    command = Command(
        op=op, webhook_id=webhook_id, workspace_id=_opt_str(record, "workspace_id"),
        webhook=webhook, reason=_opt_str(record, "reason"),
        requested_at=_opt_str(record, "requested_at"),
        command_id=_opt_str(record, "command_id"),
    )
    if op == "create":
        if command.workspace_id is None:
            raise InvalidCommand("field 'workspace_id' is required to create")
        for name in ("url", "events"):
            if name not in webhook:
                raise InvalidCommand(f"field 'webhook.{name}' is required to create")
    return command


def _validate_fields(webhook: dict[str, Any]) -> None:
    if "url" in webhook and not isinstance(webhook["url"], str):
        raise InvalidCommand("field 'webhook.url' must be a string")
    if "events" in webhook:
        events = webhook["events"]
        if not isinstance(events, list) or not events:
            raise InvalidCommand("field 'webhook.events' must be a non-empty list")
        for pattern in events:
            if not isinstance(pattern, str) or not catalog.is_valid_pattern(pattern):
                raise InvalidCommand(f"field 'webhook.events': unknown event type {pattern!r}")
    if "secret" in webhook and (not isinstance(webhook["secret"], str)
                                or len(webhook["secret"]) < MIN_SECRET_LENGTH):
        raise InvalidCommand("field 'webhook.secret' must be a string of at least "
                             f"{MIN_SECRET_LENGTH} characters")
    if "active" in webhook and not isinstance(webhook["active"], bool):
        raise InvalidCommand("field 'webhook.active' must be true or false")
    if "signature_scheme" in webhook and webhook["signature_scheme"] not in SCHEMES:
        raise InvalidCommand(
            f"field 'webhook.signature_scheme' must be one of {', '.join(SCHEMES)}")
    if "description" in webhook and (not isinstance(webhook["description"], str)
                                     or len(webhook["description"]) > MAX_DESCRIPTION):
        raise InvalidCommand(
            f"field 'webhook.description' must be a string of at most {MAX_DESCRIPTION} characters"
        )
    if "headers" in webhook:
        webhook["headers"] = _headers(webhook["headers"])
    if "filter" in webhook:
        try:
            # Kept as its canonical text: what the subscription stores.
            webhook["filter"] = filters.parse_filter(webhook["filter"]).to_json()
        except filters.FilterError as exc:
            raise InvalidCommand(f"field 'webhook.{exc}") from exc
    if "rate_limit" in webhook:
        limit = webhook["rate_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                0 <= limit <= MAX_RATE_LIMIT):
            raise InvalidCommand(f"field 'webhook.rate_limit' must be an integer from 1 to "
                                 f"{MAX_RATE_LIMIT} deliveries per second (0 clears it)")


def _headers(value: Any) -> dict[str, str]:
    """Custom headers as core.headers checks them, values sealed or not."""
    if not isinstance(value, dict):
        raise InvalidCommand("field 'webhook.headers' must be an object of strings")
    try:
        return headers.check_stored_headers(value)
    except headers.HeaderError as exc:
        raise InvalidCommand(f"field 'webhook.{exc}") from exc


def apply(
    current: Subscription | None, command: Command, now_ms: int, *, allow_insecure: bool,
    rotation_grace_ms: int = 24 * 3600 * 1000,
) -> Subscription | None:
    """The subscription after `command`; None means deleted. Raises InvalidCommand.

    Secrets pass through as they come (the control agent seals plaintext ones).
    """
    updated = _apply(current, command, now_ms, allow_insecure, rotation_grace_ms)
    if updated is not None and command.command_id is not None:
        updated = replace(updated, last_command=command.command_id)
    return updated


def _apply(
    current: Subscription | None, command: Command, now_ms: int, allow_insecure: bool,
    rotation_grace_ms: int,
) -> Subscription | None:
    fields = command.webhook
    url: str | None = None
    if "url" in fields:
        try:
            # Stored as check_url returns it (its canonical form): the URL kept is the one
            # that was checked, not a spelling the checker read differently.
            url = check_url(fields["url"], allow_insecure=allow_insecure)
        except UrlPolicyError as exc:
            raise InvalidCommand(f"field 'webhook.url': {exc}") from exc
    if command.op == "create":
        if current is not None:
            raise InvalidCommand(f"webhook {command.webhook_id} already exists")
        assert command.workspace_id is not None and url is not None  # validate_command
        active = fields.get("active", True)
        return Subscription(
            id=command.webhook_id, workspace_id=command.workspace_id, url=url,
            events=tuple(dict.fromkeys(fields["events"])),
            secret=fields.get("secret") or generate_secret(), active=active,
            created_at=now_ms, updated_at=now_ms,
            disabled_reason=None if active else (command.reason or "created inactive"),
            description=fields.get("description"),
            signature_scheme=fields.get("signature_scheme", "hookstream"),
            **_controls(fields),
        )
    if current is None:
        raise InvalidCommand(f"webhook {command.webhook_id} does not exist")
    if command.workspace_id is not None and command.workspace_id != current.workspace_id:
        # A webhook never moves: its workspace decides who may see it.
        raise InvalidCommand(f"webhook {command.webhook_id} belongs to another workspace")
    if command.op == "delete":
        return None
    if command.op == "enable":
        return replace(current, active=True, disabled_reason=None, updated_at=now_ms)
    if command.op == "disable":
        return replace(current, active=False, updated_at=now_ms,
                       disabled_reason=command.reason or "disabled by operator")
    if command.op == "rotate_secret":
        # The old secret keeps signing (X-Webhook-Signature-Previous) through the grace
        # period, so receivers can switch without dropping deliveries.
        return replace(current, secret=fields.get("secret") or generate_secret(),
                       previous_secret=current.secret,
                       previous_secret_until=now_ms + rotation_grace_ms, updated_at=now_ms)
    # update
    changed = replace(
        current, updated_at=now_ms,
        url=current.url if url is None else url,
        events=tuple(dict.fromkeys(fields["events"])) if "events" in fields else current.events,
        secret=fields.get("secret", current.secret),
        description=fields.get("description", current.description),
        signature_scheme=fields.get("signature_scheme", current.signature_scheme),
        **_controls(fields),
    )
    if "active" in fields and fields["active"] != current.active:
        changed = replace(
            changed, active=fields["active"],
            disabled_reason=None if fields["active"] else (command.reason or "disabled by update"),
        )
    return changed


def _controls(fields: dict[str, Any]) -> dict[str, Any]:
    """The per-webhook controls a command sets, as Subscription fields: headers replace
    the old set ({} clears), a filter replaces the old one ({} clears), a rate limit of 0
    goes back to the deployment's default."""
    changed: dict[str, Any] = {}
    if "headers" in fields:
        changed["headers"] = tuple(fields["headers"].items())
    if "filter" in fields:
        changed["filter"] = None if fields["filter"] == "{}" else fields["filter"]
    if "rate_limit" in fields:
        changed["rate_limit"] = fields["rate_limit"] or None
    return changed
