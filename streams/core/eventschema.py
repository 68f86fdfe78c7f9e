"""The event catalog as receivers read it: each type's description, the JSON Schema of its
`data`, and an example. Pure: built from the parsed Avro schemas, on request.

The Avro schemas under schemas/ are the one source of truth for what `data` holds; the
JSON Schemas (draft 2020-12) are derived, never written by hand, so they cannot drift.
`json_schema` maps what the .avsc files use, and the rest of Avro besides:

    record            object: properties, required (fields without a default),
                      additionalProperties false (unless closed=False)
    union             {"type": [...]} when every branch is a bare type (["null", "string"]
                      -> nullable string), else anyOf
    enum              string, enum; array -> items; map -> additionalProperties
    int, long         integer, bounded to 32 or 64 bits (JavaScript loses precision past
                      2**53; the bound says what the wire allows, not what is safe)
    float, double     number; boolean, null, string as themselves
    bytes, fixed      string of code points U+0000-U+00FF (Avro's JSON encoding)
    logical types     the underlying type, described (timestamp-millis: epoch ms, UTC);
                      uuid: string, format uuid
    named references  inlined; a recursive schema is refused (ValueError)

Doc strings become descriptions and defaults become defaults.

The catalog's data schemas are open (closed=False): streams.core.events passes fields the
schema does not know through to receivers, so producers can add data before the schema
learns of it, and a receiver validating against a closed schema would reject real
deliveries. The closed form is what an Avro-decoded record alone can hold. What the schema
cannot say, events still refuses: integers past 2**53 (JSON Schema cannot tell them from
floats), lone surrogates, nesting past 100 levels, data over 256 KiB (streams.core.payload).

`example` is deterministic, valid against its own JSON Schema and a valid Avro datum: field
defaults where they say something (not null), else a value from the field's doc (an ISO
8601 date or time; the first of `a | b | c`), its name (`*_id`, `*_by`, `email`), or its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import catalog
from .schemas import FAMILY_DATA, registry

#: The documentation's example time, 2025-10-14T10:30:00Z, in each form examples need.
EXAMPLE_TIME_MS: Final = 1_760_437_800_000
EXAMPLE_TIME: Final = "2025-10-14T10:30:00Z"
EXAMPLE_DATE: Final = "2025-10-30"

#: What each event type means, as the public documentation says it (the task events) or
#: in its words (the rest). A test pins that every catalog type has one.
DESCRIPTIONS: Final[dict[str, str]] = {
    "task.created": "New task created",
    "task.updated": "Task modified",
    "task.completed": "Task marked done",
    "task.deleted": "Task removed",
    "task.assigned": "Task assigned to user",
    "project.created": "New project created",
    "project.updated": "Project modified",
    "project.archived": "Project archived",
    "project.deleted": "Project removed",
    "comment.created": "New comment on a task",
    "comment.updated": "Comment edited",
    "comment.deleted": "Comment removed",
    "user.added": "User added to the workspace",
    "user.removed": "User removed from the workspace",
    "user.role_changed": "User's role in the workspace changed",
    "webhook.disabled": "Another webhook of the workspace was disabled by hookstream "
                        "(its deliveries failed, or its endpoint answered 410 Gone)",
    "webhook.failing": "Another webhook of the workspace failed its last attempts in a row: "
                       "at 50% and again at 90% of the count that disables it",
    "delivery.dead_lettered": "A delivery to another webhook of the workspace will not be "
                              "retried; it waits in the dead-letter queue for a replay",
}

_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PRIMITIVE_TYPES = {"null": "null", "boolean": "boolean", "string": "string",
                    "float": "number", "double": "number"}
_LOGICAL = {
    "timestamp-millis": "milliseconds since the Unix epoch (UTC)",
    "timestamp-micros": "microseconds since the Unix epoch (UTC)",
    "local-timestamp-millis": "milliseconds since the Unix epoch, local time",
    "local-timestamp-micros": "microseconds since the Unix epoch, local time",
    "date": "days since the Unix epoch (1970-01-01)",
    "time-millis": "milliseconds after midnight",
    "time-micros": "microseconds after midnight",
}
_BYTES_PATTERN = "^[\\u0000-\\u00ff]*$"


@dataclass(frozen=True)
class EventType:
    """One catalog entry: what a receiver of `type` is sent in `data`."""

    type: str
    description: str
    #: JSON Schema (draft 2020-12) of the event's `data`.
    data_schema: dict[str, Any]
    #: An example `data`, valid against data_schema.
    example: dict[str, Any]


def event_types() -> dict[str, EventType]:
    """Every catalog event type, in the catalog's order, with its schema and example."""
    schemas = registry().by_name
    entries: dict[str, EventType] = {}
    for family, types in catalog.EVENT_TYPES.items():
        avro = schemas[FAMILY_DATA[family]]
        for event_type in types:
            entries[event_type] = EventType(
                event_type, DESCRIPTIONS[event_type], json_schema(avro, closed=False),
                example(avro))
    return entries


def _named(avro_schema: Any, named: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if named is not None:
        return named
    found = avro_schema.get("__named_schemas") if isinstance(avro_schema, dict) else None
    return found if isinstance(found, dict) else {}


def json_schema(avro_schema: Any, *, closed: bool = True,
                named: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON form of `avro_schema`'s values.

    `avro_schema` is parsed (fastavro's parse_schema, as streams.core.schemas holds them) or
    plain; named types are looked up in `named`, by default the parsed schema's own table.
    `closed`: whether records refuse properties they do not declare. ValueError for a
    recursive schema or an Avro type this does not know.
    """
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                **_convert(avro_schema, closed, _named(avro_schema, named), ())}
    return document


def _convert(avro: Any, closed: bool, named: Mapping[str, Any],
             seen: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(avro, list):
        branches = [_convert(b, closed, named, seen) for b in avro]
        if all(set(b) == {"type"} and isinstance(b["type"], str) for b in branches):
            return {"type": [b["type"] for b in branches]}
        return {"anyOf": branches}
    if isinstance(avro, str):
        return _by_name(avro, closed, named, seen)
    if not isinstance(avro, dict):
        raise ValueError(f"not an Avro schema: {avro!r}")
    kind = avro.get("type")
    logical = avro.get("logicalType")
    if kind == "record" or kind == "error":
        return _record(avro, closed, named, seen)
    if kind == "enum":
        out: dict[str, Any] = {"type": "string", "enum": list(avro["symbols"])}
    elif kind == "array":
        out = {"type": "array", "items": _convert(avro["items"], closed, named, seen)}
    elif kind == "map":
        out = {"type": "object",
               "additionalProperties": _convert(avro["values"], closed, named, seen)}
    elif kind == "fixed":
        size = int(avro["size"])
        out = {"type": "string", "minLength": size, "maxLength": size,
               "pattern": _BYTES_PATTERN}
    elif logical == "uuid":
        out = {"type": "string", "format": "uuid"}
    else:
        out = dict(_convert(kind, closed, named, seen))
        if logical in _LOGICAL:
            out["description"] = _LOGICAL[logical]
    if isinstance(avro.get("doc"), str) and kind in ("enum", "fixed"):
        out["description"] = avro["doc"]
    return out


def _by_name(name: str, closed: bool, named: Mapping[str, Any],
             seen: tuple[str, ...]) -> dict[str, Any]:
    if name in _PRIMITIVE_TYPES:
        return {"type": _PRIMITIVE_TYPES[name]}
    if name in _INT_BOUNDS:
        low, high = _INT_BOUNDS[name]
        return {"type": "integer", "minimum": low, "maximum": high}
    if name == "bytes":
        return {"type": "string", "pattern": _BYTES_PATTERN}
    if name in named:
        return _convert(named[name], closed, named, seen)
    raise ValueError(f"unknown Avro type {name}")


def _record(avro: dict[str, Any], closed: bool, named: Mapping[str, Any],
            seen: tuple[str, ...]) -> dict[str, Any]:
    name = str(avro.get("name", ""))
    if name in seen:
        raise ValueError(f"{name} is recursive; JSON Schemas here are inlined")
    inner = (*seen, name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in avro["fields"]:
        prop = _convert(field["type"], closed, named, inner)
        if isinstance(field.get("doc"), str):
            # A logical type's unit stays said: "Not before this (milliseconds since ...)".
            unit = prop.get("description")
            prop = {**prop, "description": field["doc"] + (f" ({unit})" if unit else "")}
        if "default" in field:
            prop = {**prop, "default": field["default"]}
        else:
            required.append(field["name"])
        properties[field["name"]] = prop
    out: dict[str, Any] = {"title": name.rsplit(".", 1)[-1], "type": "object",
                           "properties": properties, "required": required}
    if isinstance(avro.get("doc"), str):
        out["description"] = avro["doc"]
    if closed:
        out["additionalProperties"] = False
    return out


def example(avro_schema: Any, *, named: Mapping[str, Any] | None = None) -> Any:
    """A deterministic example value of `avro_schema`, in its JSON form (see the module)."""
    return _example(avro_schema, _named(avro_schema, named), "", None, "", ())


def _example(avro: Any, named: Mapping[str, Any], field: str, doc: str | None,
             record: str, seen: tuple[str, ...]) -> Any:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"] or avro
        return _example(branches[0], named, field, doc, record, seen)
    if isinstance(avro, str):
        if avro in named:
            return _example(named[avro], named, field, doc, record, seen)
        return _primitive(avro, field, doc, record)
    kind = avro["type"]
    if kind in ("record", "error"):
        name = str(avro.get("name", ""))
        if name in seen:
            raise ValueError(f"{name} is recursive")
        short = name.rsplit(".", 1)[-1]
        return {f["name"]: _field_example(f, named, short, (*seen, name))
                for f in avro["fields"]}
    if kind == "enum":
        return avro.get("default", avro["symbols"][0])
    if kind == "array":
        return [_example(avro["items"], named, field, None, record, seen)]
    if kind == "map":
        return {"key": _example(avro["values"], named, field, None, record, seen)}
    if kind == "fixed":
        return "\u0000" * int(avro["size"])
    logical = avro.get("logicalType")
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        return EXAMPLE_TIME_MS
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        return EXAMPLE_TIME_MS * 1000
    if logical == "date":
        return EXAMPLE_TIME_MS // 86_400_000
    if logical == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    return _example(kind, named, field, doc, record, seen)


def _field_example(field: dict[str, Any], named: Mapping[str, Any], record: str,
                   seen: tuple[str, ...]) -> Any:
    default = field.get("default")
    if default is not None and default != [] and default != {}:
        return default
    return _example(field["type"], named, field["name"], field.get("doc"), record, seen)


def _primitive(kind: str, field: str, doc: str | None, record: str) -> Any:
    if kind == "string":
        return _string(field, doc, record)
    examples: dict[str, Any] = {"null": None, "boolean": True, "int": 1, "long": 1,
                                "float": 1.5, "double": 1.5, "bytes": ""}
    if kind not in examples:
        raise ValueError(f"unknown Avro type {kind}")
    return examples[kind]


def _string(field: str, doc: str | None, record: str) -> str:
    text = doc or ""
    if text.startswith("ISO 8601 date"):
        return EXAMPLE_DATE
    if text.startswith("ISO 8601"):
        return EXAMPLE_TIME
    if " | " in text:
        first = text.split(" | ", 1)[0].strip()
        if first and " " not in first:
            return first
    stem = record.lower().removesuffix("data") or "object"
    if field == "id":
        return f"{stem}_123"
    if field.endswith("_id"):
        return f"{field.removesuffix('_id')}_123"
    if field.endswith("_by"):  # created_by, added_by: who, a user id
        return "user_123"
    if field == "email":
        return "ada@example.com"
    return f"Example {field.replace('_', ' ')}".strip()
