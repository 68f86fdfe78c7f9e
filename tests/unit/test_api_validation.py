"""streams.api.validation: request bodies parsed and checked, with the offending field named."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from streams.api import validation as v
from streams.api.validation import MAX_BODY, ApiError, create_body, parse_json, patch_body
from streams.subscriptions.commands import MAX_DESCRIPTION, MAX_REASON, generate_secret

URL = "https://example.com/hooks"
BASE: dict[str, Any] = {"url": URL, "events": ["task.created"]}


def _raises(field: str, call: Callable[[], object], match: str | None = None) -> ApiError:
    with pytest.raises(ApiError, match=match) as info:
        call()
    error = info.value
    assert error.status == 400
    assert error.code == "invalid_request"
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    return error


def _create(allow_insecure: bool = False, **fields: Any) -> dict[str, Any]:
    return create_body({**BASE, **fields}, allow_insecure=allow_insecure)


def _whsec(n_bytes: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(n_bytes))).decode()


# --- ApiError ---------------------------------------------------------------------------------


def test_error_body_with_field() -> None:
    error = v.invalid("url", "must be a non-empty string")
    assert error.status == 400
    assert str(error) == "url: must be a non-empty string"
    assert error.body() == {"error": {"code": "invalid_request",
                                      "message": "url: must be a non-empty string",
                                      "field": "url"}}
    json.dumps(error.body())


def test_error_body_without_field() -> None:
    error = ApiError(401, "unauthorized", "a valid API key is required")
    assert error.body() == {"error": {"code": "unauthorized",
                                      "message": "a valid API key is required"}}


# --- parse_json -------------------------------------------------------------------------------


def test_parse_json_object() -> None:
    assert parse_json(b'{"url": "https://x.example", "n": [1, 2.5, null, true]}') == {
        "url": "https://x.example", "n": [1, 2.5, None, True]}


def test_parse_json_keeps_valid_unicode() -> None:
    assert parse_json('{"d": "😀 ünï"}'.encode()) == {"d": "😀 ünï"}
    assert parse_json(b'{"d": "\\ud83d\\ude00"}') == {"d": "😀"}


@pytest.mark.parametrize("raw", [b"{", b'{"a": }', b"{'a': 1}", b'{"a": 1} x', b"\xff\xfe\xfa",
                                 b'{"a": "\xff"}', b"nul"])
def test_parse_json_malformed(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw), "malformed JSON")


@pytest.mark.parametrize("raw", [b"[]", b"[1]", b'"text"', b"1", b"null", b"true"])
def test_parse_json_non_object(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw), "must be a JSON object")


def test_parse_json_size_limit() -> None:
    padding = MAX_BODY - len(b'{"a":""}')
    at_limit = b'{"a":"' + b"x" * padding + b'"}'
    assert len(at_limit) == MAX_BODY
    assert parse_json(at_limit) == {"a": "x" * padding}
    over = b'{"a":"' + b"x" * (padding + 1) + b'"}'
    _raises("body", lambda: parse_json(over), f"larger than {MAX_BODY} bytes")
    _raises("body", lambda: parse_json(b" " * (MAX_BODY + 1), required=False), "larger than")


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n\t "])
def test_parse_json_empty(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw), "a JSON object is required")
    _raises("body", lambda: parse_json(raw, required=True), "a JSON object is required")
    assert parse_json(raw, required=False) == {}


def test_parse_json_not_required_still_checks_a_body() -> None:
    assert parse_json(b'{"reason": "x"}', required=False) == {"reason": "x"}
    _raises("body", lambda: parse_json(b"[]", required=False), "must be a JSON object")


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}',
                                 b'{"a": [1, NaN]}'])
def test_parse_json_refuses_nan(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw), "is not valid JSON")


@pytest.mark.parametrize("raw", [b'{"a": "\\ud800"}', b'{"a": "x\\udfffy"}',
                                 b'{"\\ud800": 1}', b'{"a": {"b": ["\\udc00"]}}'])
def test_parse_json_refuses_lone_surrogates(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw), "lone UTF-16 surrogate")


def test_parse_json_deep_but_reasonable_nesting() -> None:
    assert parse_json(b'{"a":' + b"[" * 50 + b"]" * 50 + b"}") is not None


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_parse_json_deep_nesting_is_a_400(raw: bytes) -> None:
    _raises("body", lambda: parse_json(raw))


# --- create_body -----------------------------------------------------------------------------


def test_create_minimal_gets_defaults() -> None:
    assert create_body(dict(BASE), allow_insecure=False) == {
        "url": URL, "events": ["task.created"], "active": True,
        "signature_scheme": "hookstream"}


def test_create_full() -> None:
    secret = generate_secret()
    fields = create_body({**BASE, "secret": secret, "active": False, "description": "CRM sync",
                          "signature_scheme": "standard-webhooks", "workspace_id": "ws_1"},
                         allow_insecure=False)
    assert fields == {"url": URL, "events": ["task.created"], "active": False,
                      "signature_scheme": "standard-webhooks", "description": "CRM sync",
                      "secret": secret}
    assert "workspace_id" not in fields  # the API handler decides who may name one


def test_create_nulls_are_absent() -> None:
    fields = _create(secret=None, description=None)
    assert "secret" not in fields
    assert "description" not in fields


@pytest.mark.parametrize("missing", ["url", "events"])
def test_create_required(missing: str) -> None:
    body = {k: val for k, val in BASE.items() if k != missing}
    _raises(missing, lambda: create_body(body, allow_insecure=True), "is required")


def test_create_url_required_before_events() -> None:
    _raises("url", lambda: create_body({}, allow_insecure=True), "is required")


@pytest.mark.parametrize(("extra", "field"), [
    ({"bogus": 1}, "bogus"),
    ({"previous_secret": "x" * 20}, "previous_secret"),
    ({"zz": 1, "id": "wh_1"}, "id"),
    ({"URL": URL}, "URL"),
])
def test_create_unknown_field_is_named(extra: dict[str, Any], field: str) -> None:
    _raises(field, lambda: create_body({**BASE, **extra}, allow_insecure=True), "unknown field")


def test_create_unknown_field_checked_before_required() -> None:
    _raises("bogus", lambda: create_body({"bogus": 1}, allow_insecure=True), "unknown field")


@pytest.mark.parametrize("active", ["true", 1, 0, None, []])
def test_create_active_must_be_bool(active: Any) -> None:
    _raises("active", lambda: _create(active=active), "true or false")


@pytest.mark.parametrize("scheme", ["HOOKSTREAM", "standard_webhooks", "", None, 1, ["hookstream"]])
def test_create_unknown_scheme(scheme: Any) -> None:
    _raises("signature_scheme", lambda: _create(signature_scheme=scheme), "must be one of")


# secrets


def test_create_secret_min_length() -> None:
    assert _create(secret="s" * 16)["secret"] == "s" * 16
    _raises("secret", lambda: _create(secret="s" * 15), "at least 16 characters")
    _raises("secret", lambda: _create(secret=""), "at least 16")
    _raises("secret", lambda: _create(secret=12345678901234567), "at least 16")


def test_create_hookstream_secret_may_be_any_text() -> None:
    for secret in ("not-base64-at-all!!", "ünïcødé-sécret-long-enough", "whsec_short_but_16+"):
        assert _create(secret=secret)["secret"] == secret


@pytest.mark.parametrize("secret", [_whsec(24), _whsec(32), _whsec(64), generate_secret()],
                         ids=["24 bytes", "32 bytes", "64 bytes", "generated"])
def test_create_standard_webhooks_secret(secret: str) -> None:
    assert _create(secret=secret, signature_scheme="standard-webhooks")["secret"] == secret


@pytest.mark.parametrize("secret", [
    _whsec(23),
    _whsec(16),
    base64.b64encode(bytes(32)).decode(),  # no whsec_ prefix
    "whsec_" + "not base64 at all!!!!!!!!!!!!!!!",
    "whsec_" + base64.b64encode(bytes(32)).decode()[:-1],  # bad padding
    "whsec_" + "é" * 40,  # non-ASCII
    "whsec_" + base64.b64encode(bytes(32)).decode() + "é",
    "x" * 16,
])
def test_create_standard_webhooks_bad_secret(secret: str) -> None:
    _raises("secret", lambda: _create(secret=secret, signature_scheme="standard-webhooks"),
            "standard-webhooks needs whsec_")


def test_create_standard_webhooks_short_secret_checks_length_first() -> None:
    _raises("secret", lambda: _create(secret="whsec_", signature_scheme="standard-webhooks"),
            "at least 16")


# description


def test_create_description_max() -> None:
    assert _create(description="d" * MAX_DESCRIPTION)["description"] == "d" * MAX_DESCRIPTION
    _raises("description", lambda: _create(description="d" * (MAX_DESCRIPTION + 1)),
            f"at most {MAX_DESCRIPTION} characters")
    _raises("description", lambda: _create(description=5), "must be a string")


# events


def test_create_events_dedupe_keeping_order() -> None:
    events = ["task.updated", "task.created", "task.updated", "*", "project.*", "task.created"]
    assert _create(events=events)["events"] == ["task.updated", "task.created", "*", "project.*"]


@pytest.mark.parametrize("events", [["task.*"], ["*"], ["user.role_changed", "comment.*"]])
def test_create_events_patterns(events: list[str]) -> None:
    assert _create(events=events)["events"] == events


@pytest.mark.parametrize("events", [[], "task.created", None, {"task.created": 1}])
def test_create_events_must_be_non_empty_list(events: Any) -> None:
    _raises("events", lambda: _create(events=events), "non-empty list")


@pytest.mark.parametrize("bad", ["task.exploded", "bogus.*", "task", "", "Task.created",
                                 "webhook.test", 1, None, ["task.created"]])
def test_create_events_unknown_type(bad: Any) -> None:
    _raises("events", lambda: _create(events=["task.created", bad]), "unknown event type")


# urls


@pytest.mark.parametrize(("url", "stored"), [
    ("https://example.com/h", "https://example.com/h"),
    ("https://example.com", "https://example.com/"),
    ("https://api.example.com:8443/hooks?x=1#f", "https://api.example.com:8443/hooks?x=1"),
    ("https://93.184.215.14/h", "https://93.184.215.14/h"),
    ("https://B\u00fccher.example/h", "https://xn--bcher-kva.example/h")])
@pytest.mark.parametrize("allow_insecure", [True, False])
def test_create_url_accepted(url: str, stored: str, allow_insecure: bool) -> None:
    """Stored in the form the client connects to (streams.core.urls)."""
    assert _create(allow_insecure, url=url)["url"] == stored


@pytest.mark.parametrize("url", ["http://example.com/h", "http://127.0.0.1:8080/x",
                                 "https://127.0.0.1/x", "https://localhost/x",
                                 "https://10.0.0.1/x", "https://[::1]/x",
                                 "https://169.254.169.254/latest", "https://100.64.0.1/"])
def test_create_url_refused_unless_insecure(url: str) -> None:
    _raises("url", lambda: _create(False, url=url))
    assert _create(True, url=url)["url"] == url


@pytest.mark.parametrize("url", ["https://user:pw@example.com/h", "https://user@example.com/h",
                                 "http://user:pw@127.0.0.1:8080/x", "https://:pw@example.com/"])
@pytest.mark.parametrize("allow_insecure", [True, False])
def test_create_url_with_credentials_always_refused(url: str, allow_insecure: bool) -> None:
    _raises("url", lambda: _create(allow_insecure, url=url), "credentials")


@pytest.mark.parametrize("url", ["ftp://example.com/h", "example.com/h", "https://",
                                 "https:///path", "https://example.com:70000/",
                                 "https://example.com:0/", "https://example.com/" + "a" * 2048])
@pytest.mark.parametrize("allow_insecure", [True, False])
def test_create_url_invalid(url: str, allow_insecure: bool) -> None:
    _raises("url", lambda: _create(allow_insecure, url=url))


@pytest.mark.parametrize("url", ["", None, 5, ["https://example.com"]])
def test_create_url_must_be_a_non_empty_string(url: Any) -> None:
    _raises("url", lambda: _create(True, url=url), "non-empty string")


@pytest.mark.parametrize("url", ["https://exa\tmple.com/h", "https://example.com/h\n",
                                 "https://example.com/a\rb"])
@pytest.mark.parametrize("allow_insecure", [True, False])
def test_create_url_with_control_characters_refused(url: str, allow_insecure: bool) -> None:
    _raises("url", lambda: _create(allow_insecure, url=url))


# --- patch_body -------------------------------------------------------------------------------


def test_patch_empty_is_an_error() -> None:
    _raises("body", lambda: patch_body({}, allow_insecure=True), "nothing to change")


@pytest.mark.parametrize("field", ["secret", "workspace_id", "id", "previous_secret", "bogus"])
def test_patch_unknown_field(field: str) -> None:
    _raises(field, lambda: patch_body({field: "x" * 20}, allow_insecure=True), "unknown field")
    _raises(field, lambda: patch_body({"active": True, field: "x" * 20}, allow_insecure=True),
            "unknown field")


def test_patch_only_given_fields() -> None:
    assert patch_body({"active": False}, allow_insecure=False) == {"active": False}
    assert patch_body({"description": None}, allow_insecure=False) == {"description": None}
    assert patch_body({"signature_scheme": "standard-webhooks"}, allow_insecure=False) == {
        "signature_scheme": "standard-webhooks"}
    assert patch_body({"url": URL, "events": ["*", "*"]}, allow_insecure=False) == {
        "url": URL, "events": ["*"]}


def test_patch_checks_values() -> None:
    _raises("url", lambda: patch_body({"url": "http://example.com/"}, allow_insecure=False))
    assert patch_body({"url": "http://example.com/"}, allow_insecure=True) == {
        "url": "http://example.com/"}
    _raises("url", lambda: patch_body({"url": "https://u:p@example.com/"}, allow_insecure=True))
    _raises("events", lambda: patch_body({"events": []}, allow_insecure=True))
    _raises("active", lambda: patch_body({"active": None}, allow_insecure=True))
    _raises("description", lambda: patch_body({"description": "d" * (MAX_DESCRIPTION + 1)},
                                              allow_insecure=True))
    _raises("signature_scheme", lambda: patch_body({"signature_scheme": None},
                                                   allow_insecure=True))


# --- limit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, 50), ("1", 1), ("10", 10), ("100", 100),
                                            (" 7 ", 7), ("+3", 3), ("007", 7)])
def test_limit(raw: str | None, value: int) -> None:
    assert v.limit(raw) == value


@pytest.mark.parametrize("raw", ["0", "101", "-1", "1000000"])
def test_limit_out_of_range(raw: str) -> None:
    _raises("limit", lambda: v.limit(raw), "between 1 and 100")


@pytest.mark.parametrize("raw", ["", "abc", "1.5", "1e2", "ten", "9" * 5000])
def test_limit_not_a_whole_number(raw: str) -> None:
    _raises("limit", lambda: v.limit(raw), "whole number")


def test_limit_custom_default_and_maximum() -> None:
    assert v.limit(None, default=5, maximum=10) == 5
    assert v.limit("10", default=5, maximum=10) == 10
    _raises("limit", lambda: v.limit("11", default=5, maximum=10), "between 1 and 10")


@pytest.mark.parametrize("raw", [None, ""])
def test_no_idempotency_key(raw: str | None) -> None:
    assert v.idempotency_key(raw) is None


@pytest.mark.parametrize("raw", ["k", "k" * 255, "order-42/retry é"])
def test_idempotency_keys_accepted(raw: str) -> None:
    assert v.idempotency_key(raw) == raw


@pytest.mark.parametrize("raw", ["k" * 256, "a\x7fb", "a\nb", "a\x00b"])
def test_idempotency_keys_refused(raw: str) -> None:
    _raises("Idempotency-Key", lambda: v.idempotency_key(raw))


# --- a disable's reason -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_no_reason_is_the_default_one(value: object) -> None:
    assert v.reason(value) is None


@pytest.mark.parametrize("value", ["maintenance", "é" * MAX_REASON, "fix: 502s from LB \u202e"])
def test_a_reason_of_one_line_is_kept_as_given(value: str) -> None:
    assert v.reason(value) == value


@pytest.mark.parametrize("value", [
    "r" * (MAX_REASON + 1), 1, ["x"], {"a": 1}, True,  # a million characters went to the
    "a\r\nb", "a\x00b", "\x1b[2J", "a\x85b", "a\u2028b", "a\x7fb",  # control topic before
])
def test_a_reason_too_long_or_not_one_line_is_refused(value: object) -> None:
    _raises("reason", lambda: v.reason(value))
