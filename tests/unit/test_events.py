"""streams.core.events: decode JSON and Avro domain events, validate them, derive stable ids."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from streams.core import events
from streams.core.events import (
    MAX_EVENT_BYTES,
    Event,
    InvalidEvent,
    decode_event,
    stable_event_id,
    validate_event,
)
from streams.core.payload import MAX_DEPTH, dumps, webhook_body
from streams.core.schemas import EVENT, FAMILY_DATA, SUBSCRIPTION, registry
from streams.delivery.models import DeliveryJob, delivery_id_for

from ..support import hostile

WHERE: dict[str, Any] = {"topic": "domain.task", "partition": 2, "offset": 41}
TS = "2025-10-14T10:30:00Z"


def _event(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "evt_1", "event": "task.created", "timestamp": TS, "workspace_id": "ws_1",
        "data": {"id": "task_789", "name": "Design homepage", "status": "todo"},
    }
    record.update(overrides)
    return record


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _decode(payload: bytes, **where: Any) -> Event:
    return decode_event(payload, **{**WHERE, **where})


def _avro(family: str, data: dict[str, Any], **overrides: Any) -> bytes:
    event_type = {"task": "task.updated", "project": "project.archived",
                  "comment": "comment.created", "user": "user.role_changed"}[family]
    record = {"id": "evt_a", "event": event_type, "timestamp": TS, "workspace_id": "ws_1",
              "data": (FAMILY_DATA[family], data)}
    record.update(overrides)
    return registry().encode(EVENT, record)


# -- JSON ------------------------------------------------------------------------------
def test_json_event() -> None:
    event = _decode(_json(_event()))
    assert event == Event("evt_1", "task.created", TS, "ws_1",
                          {"id": "task_789", "name": "Design homepage", "status": "todo"},
                          '{"id":"task_789","name":"Design homepage","status":"todo"}')


def test_json_data_key_order_kept() -> None:
    data = {"status": "todo", "id": "t", "name": "n", "custom": {"z": 1, "a": 2}}
    event = _decode(_json(_event(data=data)))
    assert list(event.data) == ["status", "id", "name", "custom"]
    assert list(event.data["custom"]) == ["z", "a"]


def test_json_extra_data_fields_kept() -> None:
    event = _decode(_json(_event(data={"id": "t", "custom": 7})))
    assert event.data == {"id": "t", "custom": 7}


def test_json_null_optional_data_field_accepted() -> None:
    event = _decode(_json(_event(data={"id": "t", "name": None})))
    assert event.data["id"] == "t"


def test_json_unicode() -> None:
    payload = _json(_event(data={"id": "t", "name": "Café 日本"})).replace(b"\\u00e9", b"\xc3\xa9")
    assert _decode(payload).data["name"] == "Café 日本"


@pytest.mark.parametrize(
    "timestamp",
    ["2025-10-14T10:30:00Z", "2025-10-14T10:30:00.123Z", "2025-10-14T12:30:00+02:00",
     "2025-10-14T10:30:00.123456+00:00"],
)
def test_json_timestamps_with_zone(timestamp: str) -> None:
    assert _decode(_json(_event(timestamp=timestamp))).timestamp == timestamp


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("project.archived", {"id": "p", "status": "archived", "archived_at": TS}),
        ("comment.deleted", {"id": "c", "task_id": "t", "body": "x"}),
        ("user.role_changed", {"id": "u", "role": "admin", "previous_role": "member"}),
        ("task.assigned", {"id": "t", "assignee_id": "u"}),
    ],
)
def test_json_each_family(event_type: str, data: dict[str, Any]) -> None:
    event = _decode(_json(_event(event=event_type, data=data)))
    assert (event.type, event.data) == (event_type, data)


# -- Avro ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "data"),
    [
        ("task", {"id": "t", "name": "Design", "due_date": "2025-10-30"}),
        ("project", {"id": "p", "status": "archived"}),
        ("comment", {"id": "c", "body": "Looks good"}),
        ("user", {"id": "u", "role": "admin", "previous_role": "member"}),
    ],
)
def test_avro_event_each_family(family: str, data: dict[str, Any]) -> None:
    event = _decode(_avro(family, data))
    assert event.id == "evt_a"
    assert event.workspace_id == "ws_1"
    assert event.timestamp == TS
    assert event.data == data  # unset optional fields are dropped, not sent as null


def test_avro_data_in_schema_order() -> None:
    event = _decode(_avro("task", {"due_date": "2025-10-30", "name": "n", "id": "t"}))
    assert list(event.data) == ["id", "name", "due_date"]


def test_avro_without_id_gets_stable_id() -> None:
    event = _decode(_avro("task", {"id": "t"}, id=None))
    assert event.id == stable_event_id("domain.task", 2, 41)


def test_avro_invalid_after_decode() -> None:
    with pytest.raises(InvalidEvent, match="'event'"):
        _decode(_avro("task", {"id": "t"}, event="task.exploded"))
    with pytest.raises(InvalidEvent, match="'timestamp'"):
        _decode(_avro("task", {"id": "t"}, timestamp="2025-10-14T10:30:00"))


# -- ids -------------------------------------------------------------------------------
def test_missing_id_is_stable() -> None:
    payload = _json({k: v for k, v in _event().items() if k != "id"})
    first = _decode(payload)
    assert first.id == _decode(payload).id == stable_event_id("domain.task", 2, 41)
    assert re.fullmatch(r"evt_[0-9a-f]{24}", first.id)


def test_stable_id_differs_by_position() -> None:
    base = stable_event_id("domain.task", 0, 1)
    assert base == stable_event_id("domain.task", 0, 1)
    others = {stable_event_id("domain.task", 0, 2), stable_event_id("domain.task", 1, 1),
              stable_event_id("domain.user", 0, 1), stable_event_id("domain.task", 0, 10)}
    assert base not in others
    assert len(others) == 4
    assert len({stable_event_id("t", 0, offset) for offset in range(1000)}) == 1000


def test_null_id_is_treated_as_missing() -> None:
    assert _decode(_json(_event(id=None))).id == stable_event_id("domain.task", 2, 41)


def test_given_id_is_kept_whatever_the_position() -> None:
    assert _decode(_json(_event()), offset=999).id == "evt_1"


# -- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "neither Avro"),
        (b"", "neither Avro"),
        (b"\xff\xfe\xfd", "neither Avro"),
        (b"{", "neither Avro"),
        (b"[1, 2]", "JSON object"),
        (b'"task.created"', "JSON object"),
        (b"null", "JSON object"),
        (b"42", "JSON object"),
        (_json(_event(extra=1)), "unknown field 'extra'"),
        (_json(_event(webhook_id="w")), "unknown field 'webhook_id'"),
        (_json(_event(event="task.exploded")), "field 'event'"),
        (_json(_event(event="webhook.test")), "field 'event'"),
        (_json(_event(event="task.*")), "field 'event'"),
        (_json(_event(event=None)), "field 'event'"),
        (_json(_event(event=5)), "field 'event'"),
        (_json({k: v for k, v in _event().items() if k != "event"}), "field 'event'"),
        (_json({k: v for k, v in _event().items() if k != "workspace_id"}),
         "field 'workspace_id'"),
        (_json(_event(workspace_id="")), "field 'workspace_id'"),
        (_json(_event(workspace_id=7)), "field 'workspace_id'"),
        (_json(_event(timestamp="yesterday")), "field 'timestamp'"),
        (_json(_event(timestamp="2025-10-14T10:30:00")), "field 'timestamp'"),
        (_json(_event(timestamp="2025-10-14")), "field 'timestamp'"),
        (_json(_event(timestamp=1760437800)), "field 'timestamp'"),
        (_json({k: v for k, v in _event().items() if k != "timestamp"}), "field 'timestamp'"),
        (_json(_event(data=[{"id": "t"}])), "field 'data'"),
        (_json(_event(data="t")), "field 'data'"),
        (_json(_event(data=None)), "field 'data'"),
        (_json({k: v for k, v in _event().items() if k != "data"}), "field 'data'"),
        (_json(_event(data={"name": "no id"})), "data.id"),
        (_json(_event(data={"id": None})), "data.id"),
        (_json(_event(data={"id": 5})), "data.id"),
        (_json(_event(data={"id": "t", "name": 5})), "data.name"),
        (_json(_event(data={"id": "t", "status": ["todo"]})), "data.status"),
        (_json(_event(event="comment.created", data={"id": "c", "body": {"x": 1}})),
         "data.body"),
        (_json(_event(event="user.added", data={"id": "u", "email": False})), "data.email"),
        (_json(_event(id="")), "field 'id'"),
        (_json(_event(id=5)), "field 'id'"),
    ],
)
def test_invalid_events(payload: bytes, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        _decode(payload)
    assert fragment in str(info.value)


def test_oversized_payload() -> None:
    record = _event(data={"id": "t", "description": ""})
    size = len(_json(record))
    record["data"]["description"] = "x" * (MAX_EVENT_BYTES - size + 1)
    payload = _json(record)
    assert len(payload) == MAX_EVENT_BYTES + 1
    with pytest.raises(InvalidEvent, match=str(MAX_EVENT_BYTES)):
        _decode(payload)


def test_payload_at_the_limit_is_accepted() -> None:
    payload = _json(_event())
    payload += b" " * (MAX_EVENT_BYTES - len(payload))
    assert len(payload) == MAX_EVENT_BYTES
    assert _decode(payload).id == "evt_1"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc3\x01garbage!",
        b"\xc3\x01" + b"\x00" * 8 + b"garbage",
        b"\xc3\x01" + b"\xff" * 40,
    ],
)
def test_garbage_after_magic(payload: bytes) -> None:
    with pytest.raises(InvalidEvent, match="fingerprint"):
        _decode(payload)


def test_known_fingerprint_garbage_body() -> None:
    header = _avro("task", {"id": "t"})[:10]
    with pytest.raises(InvalidEvent, match="bad Avro body"):
        _decode(header + b"\xff\xff\xff\xff")


def test_truncated_avro_event() -> None:
    with pytest.raises(InvalidEvent):
        _decode(_avro("task", {"id": "t", "name": "n"})[:-3])


def test_avro_trailing_bytes() -> None:
    with pytest.raises(InvalidEvent, match="trailing"):
        _decode(_avro("task", {"id": "t"}) + b"\x00")


def test_avro_record_of_another_schema() -> None:
    sub = {"id": "wh", "workspace_id": "ws", "url": "https://x", "events": ["*"], "secret": "s",
           "active": True, "created_at": 0, "updated_at": 0}
    with pytest.raises(InvalidEvent):
        _decode(registry().encode(SUBSCRIPTION, sub))


def test_validate_event_directly() -> None:
    event = validate_event(_event(id=None), topic="t", partition=1, offset=2)
    assert event.id == stable_event_id("t", 1, 2)
    with pytest.raises(InvalidEvent):
        validate_event(["not", "a", "dict"])


def test_invalid_event_is_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


# -- bug: events that validate but cannot be delivered ---------------------------------
def _deliverable(event: Event) -> None:
    """What fanout and the sender do with an accepted event; must not raise."""
    data_json = dumps(event.data)
    job = DeliveryJob(
        delivery_id=delivery_id_for(event.id, "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
        event_id=event.id, event_type=event.type, event_timestamp=event.timestamp,
        data_json=data_json, attempt=1, created_at=0,
    )
    DeliveryJob.decode(job.encode())
    webhook_body(event.id, event.type, event.timestamp, "wh_1", data_json)


def test_accepted_event_is_deliverable() -> None:
    _deliverable(_decode(_json(_event(data={"id": "t", "custom": [1.5, {"a": None}]}))))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z","workspace_id":"w",'
        b'"data":{"id":"t","score":NaN}}',
        b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z","workspace_id":"w",'
        b'"data":{"id":"t","score":-Infinity}}',
        b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z","workspace_id":"w",'
        b'"data":{"id":"\\ud800"}}',
        b'{"id":"evt_\\udc00","event":"task.created","timestamp":"2025-10-14T10:30:00Z",'
        b'"workspace_id":"w","data":{"id":"t"}}',
    ],
)
def test_accepted_events_are_deliverable_or_refused(payload: bytes) -> None:
    try:
        event = _decode(payload)
    except InvalidEvent:
        return
    _deliverable(event)


# -- hostile bytes: InvalidEvent and nothing else ----------------------------------------
@pytest.mark.parametrize("payload", hostile.deep_nesting(5000) + hostile.deep_nesting(1000),
                         ids=lambda p: p[:12].decode())
def test_deep_nesting_is_an_invalid_event(payload: bytes) -> None:
    with pytest.raises(InvalidEvent) as raised:
        _decode(payload)
    assert str(raised.value)


def test_data_nested_to_the_limit_is_accepted_and_one_deeper_refused() -> None:
    # The body adds one level to the data: at MAX_DEPTH - 1, the body is at the limit.
    deep: Any = {"id": "t"}
    for _ in range(MAX_DEPTH - 2):
        deep = {"id": "t", "child": deep}
    event = _decode(_json(_event(data=deep)))
    _deliverable(event)
    with pytest.raises(InvalidEvent, match=f"nested more than {MAX_DEPTH} levels"):
        _decode(_json(_event(data={"id": "t", "child": deep})))


def test_data_that_grows_past_the_limit_when_canonical_is_refused() -> None:
    # `1e20` is sent as 21 digits: 4 bytes in, 22 out. The job must still fit on a topic.
    numbers = b",".join([b"1e20"] * ((MAX_EVENT_BYTES - 200) // 5))
    payload = (b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z",'
               b'"workspace_id":"w","data":{"id":"t","n":[' + numbers + b"]}}")
    assert len(payload) <= MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent, match="bytes as sent"):
        _decode(payload)


def test_avro_control_characters_that_grow_past_the_limit_are_refused() -> None:
    # Each \x01 becomes a 6-byte escape in the canonical JSON.
    payload = _avro("task", {"id": "t", "name": "\x01" * (MAX_EVENT_BYTES // 3)})
    assert len(payload) <= MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent, match="bytes as sent"):
        _decode(payload)


@settings(max_examples=600, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile.hostile_bytes())
def test_any_bytes_decode_to_a_deliverable_event_or_invalid_event(payload: bytes) -> None:
    try:
        event = _decode(payload)
    except InvalidEvent as exc:
        assert str(exc)
        return
    _deliverable(event)


def test_unexpected_errors_inside_decoding_become_invalid_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a validator raises (here a bug: KeyError), the fan-out sees InvalidEvent."""
    def broken(*_args: Any, **_kwargs: Any) -> Event:
        raise KeyError("a bug")
    monkeypatch.setattr(events, "validate_event", broken)
    with pytest.raises(InvalidEvent, match="KeyError"):
        _decode(_json(_event()))
