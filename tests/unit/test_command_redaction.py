"""A refused control command's copy on hookstream.invalid keeps no secret, and no custom
header value (they hold credentials as often as not).

Whatever a producer sent, in JSON or Avro, valid or not, with the secret where it belongs
or wherever a bug put it, the copy (streams.subscriptions.commands.redacted_copy) holds
no secret; a command without one is copied byte for byte."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from streams.core.schemas import CONTROL_COMMAND, SOE_MAGIC, is_single_object, registry
from streams.subscriptions.commands import REDACTED, redacted_copy

SECRETS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                  min_size=16, max_size=40).filter(lambda s: REDACTED not in s)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _forms(secret: str) -> list[bytes]:
    """The secret as it could appear in the copy's bytes."""
    return [secret.encode(), json.dumps(secret)[1:-1].encode(),
            json.dumps(secret, ensure_ascii=False)[1:-1].encode()]


def _holds(copy: bytes, secret: str) -> bool:
    return any(form in copy for form in _forms(secret))


@given(SECRETS, st.sampled_from(["create", "update", "rotate_secret", "explode"]),
       st.dictionaries(st.sampled_from(["url", "events", "active", "x"]), JSONISH, max_size=3))
def test_a_json_command_keeps_no_secret(secret: str, op: str, extra: dict[str, Any]) -> None:
    command = {"op": op, "webhook_id": "wh_1", "webhook": {**extra, "secret": secret}}
    copy = redacted_copy(json.dumps(command).encode())
    assert not _holds(copy, secret)
    assert json.loads(copy)["webhook"]["secret"] == REDACTED
    assert json.loads(copy)["webhook_id"] == "wh_1"  # the rest is kept for the operator


@given(SECRETS, st.sampled_from(["secret", "Secret", "previous_secret", "webhook_secret"]),
       JSONISH)
def test_a_secret_anywhere_in_a_json_command_is_removed(secret: str, name: str,
                                                        around: Any) -> None:
    command = {"op": "create", "nested": [{"deeper": {name: secret}}, around]}
    assert not _holds(redacted_copy(json.dumps(command).encode()), secret)


@given(SECRETS)
def test_an_avro_command_keeps_no_secret(secret: str) -> None:
    payload = registry().encode(CONTROL_COMMAND, {
        "op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1",
        "webhook": {"url": "ftp://refused", "events": ["task.created"], "secret": secret,
                    "active": None, "description": None, "signature_scheme": None},
        "reason": None, "requested_at": None, "command_id": None})
    assert _holds(payload, secret)
    assert not _holds(redacted_copy(payload), secret)


@given(SECRETS, st.binary(max_size=30), st.binary(max_size=30))
def test_broken_bytes_that_mention_a_secret_are_not_kept(secret: str, before: bytes,
                                                        after: bytes) -> None:
    payload = before + b'{"webhook": {"secret": "' + secret.encode() + b'"' + after
    copy = redacted_copy(payload)
    assert not _holds(copy, secret)
    assert json.loads(copy)["bytes"] == len(payload)


@given(st.binary(max_size=200).filter(
    lambda b: b"secret" not in b.lower() and b"header" not in b.lower()
    and not is_single_object(b)))
def test_bytes_without_a_secret_are_copied_as_they_came(payload: bytes) -> None:
    assert redacted_copy(payload) == payload


@given(JSONISH.filter(lambda v: "secret" not in json.dumps(v).lower()
                     and "header" not in json.dumps(v).lower()))
def test_a_command_without_a_secret_is_copied_as_it_came(value: Any) -> None:
    payload = json.dumps({"op": "create", "webhook": {"url": "x", "extra": value}}).encode()
    assert redacted_copy(payload) == payload


@given(SECRETS, st.sampled_from(["create", "update", "explode"]))
def test_a_json_command_keeps_no_header_value(value: str, op: str) -> None:
    command = {"op": op, "webhook_id": "wh_1",
               "webhook": {"url": "x", "headers": {"X-Token": value, "X-Other": value}}}
    copy = redacted_copy(json.dumps(command).encode())
    assert not _holds(copy, value)
    assert json.loads(copy)["webhook"]["headers"] == {"X-Token": REDACTED,
                                                      "X-Other": REDACTED}


def _avro_command(header_value: str) -> bytes:
    return registry().encode(CONTROL_COMMAND, {
        "op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1",
        "webhook": {"url": "ftp://refused", "events": ["task.created"],
                    "headers": {"X-Token": header_value}}})


@given(SECRETS)
def test_an_avro_command_keeps_no_header_value(value: str) -> None:
    # Hypothesis also draws strings from the code's constants: a value such as
    # "signature_scheme" is in every copy as a field name, leaked by no one.
    assume(not _holds(redacted_copy(_avro_command("-" * 16)), value))
    assert not _holds(redacted_copy(_avro_command(value)), value)


@given(SECRETS, st.binary(max_size=30))
def test_broken_bytes_that_mention_headers_are_not_kept(value: str, before: bytes) -> None:
    payload = before + b'{"webhook": {"headers": {"X-Token": "' + value.encode() + b'"'
    assert not _holds(redacted_copy(payload), value)


@given(SECRETS, st.sampled_from(["Headers", "header", "extra_headers", "HEADERS"]),
       st.sampled_from(["dict", "pairs", "text"]))
def test_header_values_are_redacted_whatever_the_field_is_called_or_shaped(
        value: str, name: str, shape: str) -> None:
    held: Any = ({"Authorization": value} if shape == "dict"
                 else [["Authorization", value]] if shape == "pairs" else value)
    command = {"op": "create", "webhook_id": "wh_1", "webhook": {"url": "x", name: held}}
    copy = redacted_copy(json.dumps(command).encode())
    assert not _holds(copy, value)


@given(SECRETS, st.binary(max_size=40))
def test_avro_bytes_that_do_not_decode_are_never_kept(value: str, tail: bytes) -> None:
    """Avro has no field names to look for: undecodable single-object bytes are a digest."""
    # `op`'s length says 2**30 bytes: whatever follows, the body runs out first.
    payload = (SOE_MAGIC + registry().fingerprints[CONTROL_COMMAND] + b"\x80\x80\x80\x80\x08"
               + value.encode() + tail)
    copy = redacted_copy(payload)
    assert not _holds(copy, value)
    assert json.loads(copy)["bytes"] == len(payload)
