"""Request bodies of the webhook API: parse, validate, and name the field at fault. Pure."""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from typing import Any

from ..core import catalog, strictjson
from ..core.filters import FilterError, parse_filter
from ..core.headers import HeaderError, check_custom_headers
from ..core.urls import UrlPolicyError, check_url
from ..settings import MAX_RATE_LIMIT
from ..subscriptions.commands import MAX_DESCRIPTION, MAX_REASON, SCHEMES
from ..subscriptions.model import MIN_SECRET_LENGTH

MAX_BODY = 1024 * 1024
#: Per-webhook delivery controls, settable on create and update.
CONTROL_FIELDS = {"headers", "filter", "rate_limit"}
CREATE_FIELDS = {"url", "events", "secret", "active", "description", "signature_scheme",
                 "workspace_id", *CONTROL_FIELDS}
PATCH_FIELDS = {"url", "events", "active", "description", "signature_scheme", *CONTROL_FIELDS}


class ApiError(Exception):
    """An answer other than success: HTTP status, machine code, message, offending field,
    and headers the answer carries (a 503's Retry-After)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {message}", field)


def parse_json(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise invalid("body", f"larger than {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise invalid("body", "a JSON object is required")
        return {}
    try:
        value = strictjson.loads_bytes(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid("body", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise invalid("body", "nested too deeply") from None
    if not isinstance(value, dict):
        raise invalid("body", "must be a JSON object")
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise invalid("body", "holds a lone UTF-16 surrogate") from None
    return value


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise invalid(extra[0], "unknown field")


def url(value: Any, *, allow_insecure: bool) -> str:
    if not isinstance(value, str) or not value:
        raise invalid("url", "must be a non-empty string")
    try:
        return check_url(value, allow_insecure=allow_insecure)
    except UrlPolicyError as exc:
        raise invalid("url", str(exc)) from None


def events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid("events", "must be a non-empty list of event types")
    for pattern in value:
        if not isinstance(pattern, str) or not catalog.is_valid_pattern(pattern):
            raise invalid("events", f"unknown event type {pattern!r}")
    return list(dict.fromkeys(value))


def reason(value: Any) -> str | None:
    """A disable's `reason` (None or empty: the default one)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise invalid("reason", f"must be a string of at most {MAX_REASON} characters")
    if any(unicodedata.category(c) in _CONTROL for c in value):
        raise invalid("reason", "must be one line without control characters")
    return value


#: Unicode's control characters (C0, DEL, C1) and the line and paragraph separators.
_CONTROL = {"Cc", "Zl", "Zp"}


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise invalid("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false")
    return value


def _scheme(value: Any) -> str:
    if value not in SCHEMES:
        raise invalid("signature_scheme", f"must be one of {', '.join(SCHEMES)}")
    return str(value)


def secret(value: Any, scheme: str) -> str:
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        raise invalid("secret", f"must be a string of at least {MIN_SECRET_LENGTH} characters")
    if scheme == "standard-webhooks":
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII text
            key = b""
        if not value.startswith("whsec_") or len(key) < 24:
            raise invalid("secret", "standard-webhooks needs whsec_ + base64 of 24+ bytes")
    return value


def custom_headers(value: Any) -> dict[str, str]:
    """Plaintext here; the API seals each value before it leaves (as it does secrets)."""
    try:
        return check_custom_headers(value)
    except HeaderError as exc:
        raise invalid(exc.field, exc.reason) from None


def payload_filter(value: Any) -> str:
    """The filter's canonical JSON; "{}" (an empty filter) clears it."""
    try:
        return parse_filter(value).to_json()
    except FilterError as exc:
        raise invalid(exc.field, exc.reason) from None


def rate_limit(value: Any) -> int:
    """Deliveries per second; null (0 in the command) goes back to the default."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not (
            1 <= value <= MAX_RATE_LIMIT):
        raise invalid("rate_limit", f"must be an integer from 1 to {MAX_RATE_LIMIT} "
                      "(deliveries per second), or null for the deployment's default")
    return value


def _controls(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if body.get("headers") is not None:
        fields["headers"] = custom_headers(body["headers"])
    if body.get("filter") is not None:
        fields["filter"] = payload_filter(body["filter"])
    if "rate_limit" in body:
        fields["rate_limit"] = rate_limit(body["rate_limit"])
    return fields


def create_body(body: dict[str, Any], *, allow_insecure: bool) -> dict[str, Any]:
    """The webhook fields of a POST /v1/webhooks (secret still plaintext, maybe absent)."""
    reject_unknown(body, CREATE_FIELDS)
    if "url" not in body:
        raise invalid("url", "is required")
    if "events" not in body:
        raise invalid("events", "is required")
    fields: dict[str, Any] = {
        "url": url(body["url"], allow_insecure=allow_insecure),
        "events": events(body["events"]),
        "active": _bool(body.get("active", True), "active"),
        "signature_scheme": _scheme(body.get("signature_scheme", "hookstream")),
    }
    if body.get("description") is not None:
        fields["description"] = _description(body["description"])
    if body.get("secret") is not None:
        fields["secret"] = secret(body["secret"], fields["signature_scheme"])
    fields |= _controls(body)
    if fields.get("rate_limit") == 0:
        del fields["rate_limit"]  # null on create: the default, as if absent
    return fields


def patch_body(body: dict[str, Any], *, allow_insecure: bool) -> dict[str, Any]:
    reject_unknown(body, PATCH_FIELDS)
    if not body:
        raise invalid("body", "nothing to change")
    fields: dict[str, Any] = {}
    if "url" in body:
        fields["url"] = url(body["url"], allow_insecure=allow_insecure)
    if "events" in body:
        fields["events"] = events(body["events"])
    if "description" in body:
        fields["description"] = _description(body["description"])
    if "active" in body:
        fields["active"] = _bool(body["active"], "active")
    if "signature_scheme" in body:
        fields["signature_scheme"] = _scheme(body["signature_scheme"])
    fields |= _controls(body)
    # null clears: no headers, no filter.
    if "headers" in body and body["headers"] is None:
        fields["headers"] = {}
    if "filter" in body and body["filter"] is None:
        fields["filter"] = "{}"
    return fields


TEST_FIELDS = {"event"}


def event_to_test(body: dict[str, Any]) -> str | None:
    """The event type a POST /v1/webhooks/{id}/test asks for: a catalog type, whose example
    it sends; None (no body, or no `event`) for webhook.test."""
    reject_unknown(body, TEST_FIELDS)
    if "event" not in body:
        return None
    value = body["event"]
    if not isinstance(value, str) or not catalog.is_known(value):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise invalid("event", f"unknown event type {shown}: one of GET /v1/event-types "
                      f"(omit it for {catalog.TEST_EVENT})")
    return value


MAX_IDEMPOTENCY_KEY = 255


def idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: at most 255 visible characters (as Stripe's)."""
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_IDEMPOTENCY_KEY:
        raise invalid("Idempotency-Key", f"longer than {MAX_IDEMPOTENCY_KEY} characters")
    if any(not c.isprintable() for c in raw):
        raise invalid("Idempotency-Key", "holds control characters")
    return raw


def limit(raw: str | None, default: int = 50, maximum: int = 100) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid("limit", "must be a whole number") from None
    if not 1 <= value <= maximum:
        raise invalid("limit", f"must be between 1 and {maximum}")
    return value
