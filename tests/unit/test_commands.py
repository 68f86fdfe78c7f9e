"""streams.subscriptions.commands: decode, validate and apply control commands."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from streams.core.schemas import SchemaError
from streams.subscriptions import commands
from streams.subscriptions.commands import (
    MAX_COMMAND_BYTES,
    MAX_DESCRIPTION,
    MAX_WEBHOOK_ID,
    Command,
    InvalidCommand,
    apply,
    decode_command,
    generate_secret,
    validate_command,
)
from streams.subscriptions.model import MIN_SECRET_LENGTH, Subscription

from ..support import hostile

T0 = 1_760_437_800_000
URL = "https://example.com/hooks"


def _create(**webhook: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"url": URL, "events": ["task.created", "task.updated"]}
    fields.update(webhook)
    return {"op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1", "webhook": fields}


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _sub(**overrides: Any) -> Subscription:
    base = Subscription(
        id="wh_1", workspace_id="ws_1", url=URL, events=("task.*",), secret="whsec_original",
        active=True, created_at=T0, updated_at=T0, description="orig",
    )
    return replace(base, **overrides)


def _apply(current: Subscription | None, record: dict[str, Any], now: int = T0 + 1000,
           *, allow_insecure: bool = False) -> Subscription | None:
    return apply(current, validate_command(record), now, allow_insecure=allow_insecure)


# -- decoding ------------------------------------------------------------------------
def test_decode_json_create() -> None:
    command = decode_command(_json(_create(secret="s3cret-s3cret-s3cret", description="d")))
    assert command == Command(
        op="create", webhook_id="wh_1", workspace_id="ws_1",
        webhook={"url": URL, "events": ["task.created", "task.updated"],
                 "secret": "s3cret-s3cret-s3cret", "description": "d"},
    )


def test_decode_json_drops_null_webhook_fields() -> None:
    command = decode_command(_json(_create(secret=None, description=None)))
    assert set(command.webhook) == {"url", "events"}


@pytest.mark.parametrize(
    "command",
    [
        Command(op="create", webhook_id="wh_1", workspace_id="ws_1",
                webhook={"url": URL, "events": ("task.*", "user.added"),
                         "secret": "1234567890123456",
                         "active": False, "description": "é"},
                reason="paused", requested_at="2025-10-14T10:30:00Z"),
        Command(op="update", webhook_id="wh_1", webhook={"active": False}),
        Command(op="update", webhook_id="wh_1", webhook={"events": ["*"]}),
        Command(op="delete", webhook_id="wh_1", workspace_id="ws_1"),
        Command(op="disable", webhook_id="wh_1", reason="too many failures"),
        Command(op="enable", webhook_id="wh_1"),
        Command(op="rotate_secret", webhook_id="wh_1"),
    ],
)
def test_decode_avro(command: Command) -> None:
    payload = command.encode()
    assert payload[:2] == b"\xc3\x01"
    decoded = decode_command(payload)
    expected_webhook = {k: list(v) if k == "events" else v for k, v in command.webhook.items()}
    assert decoded == replace(command, webhook=expected_webhook)


def test_decode_avro_garbage() -> None:
    with pytest.raises(InvalidCommand, match="fingerprint"):
        decode_command(b"\xc3\x01" + b"\x00" * 8 + b"x")
    with pytest.raises(InvalidCommand):
        decode_command(Command(op="enable", webhook_id="w").encode()[:-1])


def test_decode_avro_validates_too() -> None:
    payload = Command(op="launch", webhook_id="wh_1").encode()
    with pytest.raises(InvalidCommand, match="'op'"):
        decode_command(payload)


@pytest.mark.parametrize("payload", [b"nope", b"", b"\xff", b"{"])
def test_decode_not_json(payload: bytes) -> None:
    with pytest.raises(InvalidCommand, match="neither Avro"):
        decode_command(payload)


@pytest.mark.parametrize("payload", hostile.deep_nesting(5000) + hostile.deep_nesting(1000),
                         ids=lambda p: p[:12].decode())
def test_deep_nesting_is_an_invalid_command(payload: bytes) -> None:
    with pytest.raises(InvalidCommand) as raised:
        decode_command(payload)
    assert str(raised.value)


def test_a_record_nested_too_deeply_to_store_is_an_invalid_command() -> None:
    # The API hands validate_command parsed JSON; storing it must not raise RecursionError.
    nested: Any = "x"
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(InvalidCommand, match="cannot be stored"):
        validate_command({**_create(), "reason": nested})


@settings(max_examples=600, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile.hostile_bytes())
def test_any_bytes_decode_to_a_command_or_invalid_command(payload: bytes) -> None:
    try:
        command = decode_command(payload)
    except InvalidCommand as exc:
        assert str(exc)
        return
    assert isinstance(command, Command)


def test_unexpected_errors_inside_decoding_become_invalid_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_record: Any) -> Command:
        raise KeyError("a bug")
    monkeypatch.setattr(commands, "validate_command", broken)
    with pytest.raises(InvalidCommand, match="KeyError"):
        decode_command(_json(_create()))


def test_decode_oversized() -> None:
    record = _create(description="x")
    record["reason"] = "r" * MAX_COMMAND_BYTES
    with pytest.raises(InvalidCommand, match="bytes"):
        decode_command(_json(record))


# -- validation ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ([], "must be an object"),
        ("create", "must be an object"),
        ({"op": "launch", "webhook_id": "wh_1"}, "'op'"),
        ({"webhook_id": "wh_1"}, "'op'"),
        ({"op": None, "webhook_id": "wh_1"}, "'op'"),
        ({"op": "delete"}, "'webhook_id'"),
        ({"op": "delete", "webhook_id": ""}, "'webhook_id'"),
        ({"op": "delete", "webhook_id": 5}, "'webhook_id'"),
        ({"op": "delete", "webhook_id": "wh 1"}, "visible ASCII"),
        ({"op": "delete", "webhook_id": "wh_1\r\nX-Evil: 1"}, "visible ASCII"),
        ({"op": "delete", "webhook_id": "wh_é"}, "visible ASCII"),
        ({"op": "delete", "webhook_id": "w" * (MAX_WEBHOOK_ID + 1)}, "visible ASCII"),
        ({"op": "delete", "webhook_id": ".."}, "not . or .."),  # no browser keeps the segment
        ({"op": "delete", "webhook_id": "."}, "not . or .."),
        ({"op": "delete", "webhook_id": "wh_1", "colour": "red"}, "unknown field 'colour'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"colour": "red"}},
         "unknown field 'webhook.colour'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": ["url"]}, "'webhook'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"url": 5}}, "'webhook.url'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"events": []}}, "'webhook.events'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"events": "task.*"}},
         "'webhook.events'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"events": ["task.exploded"]}},
         "'webhook.events'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"events": ["task.*", 5]}},
         "'webhook.events'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"events": ["webhook.test"]}},
         "'webhook.events'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"secret": "short"}},
         "'webhook.secret'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"secret": 12345678}},
         "'webhook.secret'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"active": "yes"}},
         "'webhook.active'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"active": 1}}, "'webhook.active'"),
        ({"op": "update", "webhook_id": "wh_1",
          "webhook": {"description": "x" * (MAX_DESCRIPTION + 1)}}, "'webhook.description'"),
        ({"op": "update", "webhook_id": "wh_1", "webhook": {"description": 5}},
         "'webhook.description'"),
        ({"op": "disable", "webhook_id": "wh_1", "reason": ""}, "'reason'"),
        ({"op": "delete", "webhook_id": "wh_1", "workspace_id": 3}, "'workspace_id'"),
        ({k: v for k, v in _create().items() if k != "workspace_id"}, "'workspace_id'"),
        (_create(url=None), "'webhook.url'"),
        (_create(events=None), "'webhook.events'"),
        ({"op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1"}, "'webhook.url'"),
    ],
)
def test_validation_errors_name_the_field(record: Any, fragment: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        validate_command(record)
    assert fragment in str(info.value)


def test_description_at_limit_and_short_secret_at_limit() -> None:
    command = validate_command(
        {"op": "update", "webhook_id": "wh_1",
         "webhook": {"description": "x" * MAX_DESCRIPTION, "secret": "8" * MIN_SECRET_LENGTH}}
    )
    assert len(command.webhook["description"]) == MAX_DESCRIPTION
    with pytest.raises(InvalidCommand, match=r"'webhook\.secret'"):
        validate_command({"op": "update", "webhook_id": "wh_1",
                          "webhook": {"secret": "8" * (MIN_SECRET_LENGTH - 1)}})


def test_the_api_and_the_control_topic_share_one_secret_rule() -> None:
    """One rule for both doors: a secret the API refuses is refused on the topic too."""
    from streams.api.validation import ApiError, create_body

    short = "s" * (MIN_SECRET_LENGTH - 1)
    with pytest.raises(ApiError, match="secret"):
        create_body({"url": "https://example.com/h", "events": ["*"], "secret": short},
                    allow_insecure=False)
    with pytest.raises(InvalidCommand):
        validate_command({"op": "update", "webhook_id": "wh_1", "webhook": {"secret": short}})


def test_invalid_command_is_value_error() -> None:
    assert issubclass(InvalidCommand, ValueError)


# -- apply: create -------------------------------------------------------------------
def test_create_generates_secret() -> None:
    sub = _apply(None, _create(), now=T0)
    assert sub is not None
    assert sub.id == "wh_1"
    assert sub.workspace_id == "ws_1"
    assert sub.url == URL
    assert sub.events == ("task.created", "task.updated")
    assert sub.secret.startswith("whsec_")
    assert len(sub.secret) > len("whsec_") + 32
    assert sub.active is True
    assert sub.disabled_reason is None
    assert sub.description is None
    assert sub.created_at == sub.updated_at == T0


def test_generated_secrets_differ() -> None:
    assert generate_secret() != generate_secret()
    first = _apply(None, _create())
    second = _apply(None, _create())
    assert first is not None and second is not None
    assert first.secret != second.secret


def test_create_keeps_given_secret_and_description() -> None:
    sub = _apply(None, _create(secret="my-own-secret-16ch", description="CRM sync"))
    assert sub is not None
    assert sub.secret == "my-own-secret-16ch"
    assert sub.description == "CRM sync"


def test_create_dedupes_events_keeping_order() -> None:
    events = ["user.*", "task.created", "user.*", "*", "task.created", "comment.deleted"]
    sub = _apply(None, _create(events=events))
    assert sub is not None
    assert sub.events == ("user.*", "task.created", "*", "comment.deleted")


def test_create_inactive() -> None:
    sub = _apply(None, _create(active=False))
    assert sub is not None
    assert sub.active is False
    assert sub.disabled_reason == "created inactive"
    sub = _apply(None, {**_create(active=False), "reason": "not yet"})
    assert sub is not None
    assert sub.disabled_reason == "not yet"


def test_create_on_existing_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="already exists"):
        _apply(_sub(), _create())


# -- apply: the other ops ------------------------------------------------------------
@pytest.mark.parametrize("op", ["update", "delete", "enable", "disable", "rotate_secret"])
def test_ops_on_missing_webhook_are_refused(op: str) -> None:
    with pytest.raises(InvalidCommand, match="does not exist"):
        _apply(None, {"op": op, "webhook_id": "wh_1"})


@pytest.mark.parametrize("op", ["update", "delete", "enable", "disable", "rotate_secret"])
def test_workspace_mismatch_is_refused(op: str) -> None:
    with pytest.raises(InvalidCommand, match="another workspace"):
        _apply(_sub(), {"op": op, "webhook_id": "wh_1", "workspace_id": "ws_other"})


def test_matching_workspace_is_fine() -> None:
    assert _apply(_sub(), {"op": "enable", "webhook_id": "wh_1", "workspace_id": "ws_1"})


def test_update_changes_only_given_fields() -> None:
    current = _sub()
    updated = _apply(current, {"op": "update", "webhook_id": "wh_1", "webhook": {
        "url": "https://other.example.com/h", "events": ["user.*", "user.*", "task.deleted"],
        "description": "new"}}, now=T0 + 5)
    assert updated == replace(
        current, url="https://other.example.com/h", events=("user.*", "task.deleted"),
        description="new", updated_at=T0 + 5,
    )


def test_update_with_nothing_only_touches_updated_at() -> None:
    current = _sub()
    updated = _apply(current, {"op": "update", "webhook_id": "wh_1"}, now=T0 + 7)
    assert updated == replace(current, updated_at=T0 + 7)


def test_update_active_flag() -> None:
    off = _apply(_sub(), {"op": "update", "webhook_id": "wh_1", "webhook": {"active": False}})
    assert off is not None
    assert (off.active, off.disabled_reason) == (False, "disabled by update")
    on = _apply(off, {"op": "update", "webhook_id": "wh_1", "webhook": {"active": True}})
    assert on is not None
    assert (on.active, on.disabled_reason) == (True, None)


def test_disable_with_reason_and_default() -> None:
    current = _sub()
    disabled = _apply(current, {"op": "disable", "webhook_id": "wh_1", "reason": "3 failures"},
                      now=T0 + 9)
    assert disabled == replace(current, active=False, disabled_reason="3 failures",
                               updated_at=T0 + 9)
    disabled = _apply(current, {"op": "disable", "webhook_id": "wh_1"})
    assert disabled is not None
    assert disabled.active is False
    assert disabled.disabled_reason == "disabled by operator"


def test_enable_clears_reason() -> None:
    current = _sub(active=False, disabled_reason="3 failures")
    enabled = _apply(current, {"op": "enable", "webhook_id": "wh_1"}, now=T0 + 3)
    assert enabled == replace(current, active=True, disabled_reason=None, updated_at=T0 + 3)


def test_rotate_secret() -> None:
    current = _sub()
    rotated = _apply(current, {"op": "rotate_secret", "webhook_id": "wh_1"}, now=T0 + 4)
    assert rotated is not None
    assert rotated.secret != current.secret
    assert rotated.secret.startswith("whsec_")
    assert rotated == replace(current, secret=rotated.secret, updated_at=T0 + 4,
                              previous_secret=current.secret,
                              previous_secret_until=T0 + 4 + 24 * 3600 * 1000)
    given = _apply(current, {"op": "rotate_secret", "webhook_id": "wh_1",
                             "webhook": {"secret": "chosen-secret-16ch"}})
    assert given is not None
    assert given.secret == "chosen-secret-16ch"


def test_delete_returns_none() -> None:
    assert _apply(_sub(), {"op": "delete", "webhook_id": "wh_1"}) is None


# -- URL policy ----------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://example.com/h", "http://127.0.0.1:8000/h",
                                 "https://10.0.0.1/h", "https://localhost/h"])
def test_insecure_url_refused(url: str) -> None:
    with pytest.raises(InvalidCommand, match=r"'webhook\.url'"):
        _apply(None, _create(url=url))
    with pytest.raises(InvalidCommand, match=r"'webhook\.url'"):
        _apply(_sub(), {"op": "update", "webhook_id": "wh_1", "webhook": {"url": url}})


def test_insecure_url_allowed_when_configured() -> None:
    sub = _apply(None, _create(url="http://127.0.0.1:8000/h"), allow_insecure=True)
    assert sub is not None
    assert sub.url == "http://127.0.0.1:8000/h"


@pytest.mark.parametrize("url", ["ftp://example.com/h", "https://u:p@example.com/h"])
def test_bad_url_refused_even_when_insecure_allowed(url: str) -> None:
    with pytest.raises(InvalidCommand, match=r"'webhook\.url'"):
        _apply(None, _create(url=url), allow_insecure=True)


@pytest.mark.parametrize("secure", [True, False])
def test_the_url_stored_is_the_one_check_url_returns(monkeypatch: pytest.MonkeyPatch,
                                                     secure: bool) -> None:
    """check_url returns the URL in the form it judged (canonical): that form is stored, on
    create and on update, never the spelling that came."""
    checked: list[tuple[str, bool]] = []

    def canonicalising(url: str, *, allow_insecure: bool) -> str:
        checked.append((url, allow_insecure))
        return f"https://canonical.example/{len(checked)}"

    monkeypatch.setattr(commands, "check_url", canonicalising)
    created = _apply(None, _create(url="HTTPS://Example.COM/h"), allow_insecure=not secure)
    assert created is not None
    assert created.url == "https://canonical.example/1"
    updated = _apply(created, {"op": "update", "webhook_id": "wh_1",
                               "webhook": {"url": "https://EXAMPLE.com/other"}},
                     allow_insecure=not secure)
    assert updated is not None
    assert updated.url == "https://canonical.example/2"
    assert checked == [("HTTPS://Example.COM/h", not secure),
                       ("https://EXAMPLE.com/other", not secure)]
    # An update without a URL keeps the stored one and checks nothing.
    renamed = _apply(updated, {"op": "update", "webhook_id": "wh_1",
                               "webhook": {"description": "d"}})
    assert renamed is not None
    assert renamed.url == "https://canonical.example/2"
    assert len(checked) == 2


# -- Subscription codec --------------------------------------------------------------
@pytest.mark.parametrize(
    "sub",
    [
        _sub(),
        _sub(active=False, disabled_reason="x", description=None, events=("*", "task.*")),
        _sub(created_at=0, updated_at=2**42 + 7),
    ],
)
def test_subscription_round_trip(sub: Subscription) -> None:
    payload = sub.encode()
    assert payload[:2] == b"\xc3\x01"
    assert Subscription.decode(payload) == sub


def test_subscription_round_trip_after_create() -> None:
    sub = _apply(None, _create(description="d"), now=T0 + 123)
    assert sub is not None
    assert Subscription.decode(sub.encode()) == sub


def test_subscription_decode_rejects_other_bytes() -> None:
    with pytest.raises(SchemaError):
        Subscription.decode(Command(op="enable", webhook_id="w").encode())


# -- bug: commands that apply but cannot be stored -----------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"create","webhook_id":"wh_1","workspace_id":"ws","webhook":'
        b'{"url":"https://example.com/h","events":["*"],"description":"\\ud800"}}',
        b'{"op":"create","webhook_id":"wh_\\udfff","workspace_id":"ws","webhook":'
        b'{"url":"https://example.com/h","events":["*"]}}',
    ],
)
def test_applied_commands_can_be_stored(payload: bytes) -> None:
    try:
        sub = apply(None, decode_command(payload), T0, allow_insecure=False)
    except InvalidCommand:
        return
    assert sub is not None
    sub.encode()


def test_command_id_survives_both_wire_formats_and_is_recorded() -> None:
    from streams.subscriptions.commands import decode_command

    command = Command(op="create", webhook_id="wh_1", workspace_id="ws_1",
                      webhook={"url": "https://example.com/h", "events": ["*"],
                               "secret": "s3cret-s3cret-s3cret"}, command_id="cmd_1")
    as_json = json.dumps(command.to_record()).encode()
    for payload in (command.encode(), as_json):
        decoded = decode_command(payload)
        assert decoded.command_id == "cmd_1"
        applied = apply(None, decoded, 1, allow_insecure=False)
        assert applied is not None and applied.last_command == "cmd_1"
