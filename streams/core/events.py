"""Domain events: decode either wire format, validate, and give every event a stable id.

Producers in any language publish to domain.<family>, keyed by workspace id, as either
- JSON: a UTF-8 object {"id", "event", "timestamp", "workspace_id", "data"}, or
- Avro single-object encoding of io.hookstream.events.Event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import catalog, strictjson
from .payload import NotRepresentable, dumps
from .schemas import EVENT, FAMILY_DATA, SchemaError, is_single_object, registry
from .timeutil import parse_iso

#: Larger events are refused: a webhook body should stay small (Stripe caps near 256 KB).
MAX_EVENT_BYTES = 256 * 1024


class InvalidEvent(ValueError):
    """An event that does not decode or validate; the message is the reason."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    timestamp: str
    workspace_id: str
    #: The event's data, key order kept: it is signed and sent as the producer wrote it.
    data: dict[str, Any]
    #: `data` in the canonical form the webhook body carries (payload.dumps).
    data_json: str


def stable_event_id(topic: str, partition: int, offset: int) -> str:
    """An id for an event that came without one: the same on every reprocessing."""
    digest = hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()
    return f"evt_{digest[:24]}"


def decode_event(payload: bytes, *, topic: str, partition: int, offset: int) -> Event:
    """Decode and validate one domain event, or raise InvalidEvent with the reason.

    InvalidEvent is the only exception, whatever the bytes: hostile input makes the
    decoders raise RecursionError (`[` nested thousands deep), UnicodeDecodeError,
    ValueError and more (test_events' hypothesis tests), and any of them escaping here
    would stop the partition behind this record.
    """
    try:
        return _decode_event(payload, topic=topic, partition=partition, offset=offset)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise InvalidEvent(f"undecodable: {type(exc).__name__}: {exc}") from exc


def _decode_event(payload: bytes, *, topic: str, partition: int, offset: int) -> Event:
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {len(payload)} bytes, over the {MAX_EVENT_BYTES} limit")
    if is_single_object(payload):
        try:
            record = registry().decode(EVENT, payload, return_record_name=True)
        except SchemaError as exc:
            raise InvalidEvent(str(exc)) from exc
        data_schema, data = record["data"]
        if not catalog.is_known(record["event"]):
            raise InvalidEvent(f"field 'event': unknown event type {record['event']!r}")
        family = catalog.family_of(record["event"])
        if FAMILY_DATA.get(family) != data_schema:
            raise InvalidEvent(f"field 'data' is a {data_schema.rsplit('.', 1)[-1]}, "
                               f"not the data of a {family} event")
        # Avro cannot tell an absent optional field from null; send only what is set.
        record["data"] = {k: v for k, v in data.items() if v is not None}
    else:
        try:
            record = strictjson.loads_bytes(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidEvent(f"neither Avro single-object encoding nor JSON: {exc}") from exc
    return validate_event(record, topic=topic, partition=partition, offset=offset)


def _require_str(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"field '{name}' must be a non-empty string")
    return value


def validate_event(
    record: Any, *, topic: str = "", partition: int = 0, offset: int = 0
) -> Event:
    if not isinstance(record, dict):
        raise InvalidEvent("event must be a JSON object")
    unknown = set(record) - {"id", "event", "timestamp", "workspace_id", "data"}
    if unknown:
        raise InvalidEvent(f"unknown field '{sorted(unknown)[0]}'")
    event_type = _require_str(record, "event")
    if not catalog.is_known(event_type):
        raise InvalidEvent(f"field 'event': unknown event type {event_type!r}")
    timestamp = _require_str(record, "timestamp")
    try:
        parse_iso(timestamp)
    except ValueError as exc:
        raise InvalidEvent(f"field 'timestamp' is not an ISO 8601 time: {exc}") from exc
    workspace_id = _require_str(record, "workspace_id")
    data = record.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent("field 'data' must be an object")
    _validate_data(catalog.family_of(event_type), data)
    event_id = record.get("id")
    if event_id is None:
        event_id = stable_event_id(topic, partition, offset)
    elif not isinstance(event_id, str) or not event_id:
        raise InvalidEvent("field 'id' must be a non-empty string when present")
    try:
        data_json = dumps(data)
        dumps(record)  # every string must be sendable, ids included
    except NotRepresentable as exc:
        raise InvalidEvent(f"field 'data' cannot be sent as JSON: {exc}") from exc
    # The canonical form can be longer than what came (`1e20` is sent as 21 digits, an Avro
    # control character as a 6-byte escape), and its job must still fit on a topic.
    sent = len(data_json.encode())
    if sent > MAX_EVENT_BYTES:
        raise InvalidEvent(f"field 'data' is {sent} bytes as sent, over the "
                           f"{MAX_EVENT_BYTES} limit")
    return Event(event_id, event_type, timestamp, workspace_id, data, data_json)


def _validate_data(family: str, data: dict[str, Any]) -> None:
    """Type-check the fields the family's schema knows; keep any others as they are.

    Extra fields pass through so producers can add data before the schema learns of it.
    A field is required unless its schema has a default; a value must be of its Avro type
    (`string`, or `int`/`long`: a whole number within its bounds, never a boolean), or null
    where the type allows it. Domain families hold strings only; the operational ones
    (webhook, delivery) hold counts and status codes too.
    """
    schema = registry().by_name[FAMILY_DATA[family]]
    for field in schema["fields"]:
        name = field["name"]
        value = data.get(name)
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if value is None:
            if "default" not in field:
                raise InvalidEvent(f"field 'data.{name}' is required")
            continue
        kind = next((k for k in kinds if k != "null"), None)
        if kind == "string":
            if not isinstance(value, str):
                raise InvalidEvent(f"field 'data.{name}' must be a string")
        elif kind in _INT_BOUNDS:
            low, high = _INT_BOUNDS[kind]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidEvent(f"field 'data.{name}' must be a whole number from "
                                   f"{low} to {high}")
        else:  # a schema of ours this does not know how to check: refuse, never guess
            raise InvalidEvent(f"field 'data.{name}' has a type events cannot check: {kind}")


#: The Avro integer types a data schema may use, and the values each holds.
_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
