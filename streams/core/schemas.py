"""Avro schemas under schemas/, and the single-object encoding every project topic carries.

Single-object encoding (Avro spec): 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body. A
reader in any language finds the writer schema by its fingerprint, so old and new
writers can share a topic while schemas evolve.
"""

from __future__ import annotations

import io
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import UnknownType, fingerprint, parse_schema, to_parsing_canonical_form

SOE_MAGIC = b"\xc3\x01"

#: Schema files in dependency order: a file may name types defined by the ones before it.
_FILES = (
    "task_data", "project_data", "comment_data", "user_data", "webhook_data", "delivery_data",
    "event",
    "control_command", "subscription", "delivery_job", "delivery_attempt", "dead_letter",
    "operational_event", "api_key",
)

EVENT = "io.hookstream.events.Event"
CONTROL_COMMAND = "io.hookstream.control.ControlCommand"
SUBSCRIPTION = "io.hookstream.control.Subscription"
DELIVERY_JOB = "io.hookstream.delivery.DeliveryJob"
DELIVERY_ATTEMPT = "io.hookstream.delivery.DeliveryAttempt"
DEAD_LETTER = "io.hookstream.delivery.DeadLetter"
OPERATIONAL_EVENT = "io.hookstream.operations.OperationalEvent"
API_KEY = "io.hookstream.control.ApiKey"
FAMILY_DATA = {
    "task": "io.hookstream.events.TaskData",
    "project": "io.hookstream.events.ProjectData",
    "comment": "io.hookstream.events.CommentData",
    "user": "io.hookstream.events.UserData",
    "webhook": "io.hookstream.events.WebhookData",
    "delivery": "io.hookstream.events.DeliveryData",
}


class SchemaError(ValueError):
    """Bytes that are not a valid record of the expected schema."""


def schemas_dir() -> Path:
    override = os.environ.get("HOOKSTREAM_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "schemas"


class Registry:
    """Parsed schemas by full name, and by single-object fingerprint."""

    def __init__(self, directory: Path) -> None:
        named: dict[str, Any] = {}
        plain_named: dict[str, Any] = {}
        self.by_name: dict[str, Any] = {}
        #: The current schemas with their timestamps read as plain longs (epoch ms): what
        #: decode reads records of the current version with. The same bytes; fastavro
        #: spends about a third of a decode turning them into datetimes, which every
        #: caller turns back into milliseconds (timeutil.to_ms, which checks their range).
        self._plain: dict[str, Any] = {}
        for stem in _FILES:
            raw = json.loads((directory / f"{stem}.avsc").read_text())
            parsed: Any = _parse_own(raw, named)
            self.by_name[parsed["name"]] = parsed
            self._plain[parsed["name"]] = _parse_own(_without_logical_types(raw), plain_named)
        self.named = named
        self.fingerprints: dict[str, bytes] = {}
        self.by_fingerprint: dict[bytes, Any] = {}
        for name, parsed in self.by_name.items():
            fp = _fingerprint(parsed)
            self.fingerprints[name] = fp
            self.by_fingerprint[fp] = parsed
        # Earlier versions stay readable: records they wrote (on a compacted topic they live
        # for ever) resolve to the current schema through Avro's schema resolution.
        # An old version that names types of other files (event.v1: the data records) is
        # read with the current ones, as it was written: its fingerprint, like the current
        # one's, covers those types by name only.
        for path in sorted((directory / "previous").glob("*.avsc")):
            raw = json.loads(path.read_text())
            try:
                old: Any = parse_schema(raw, named_schemas={})
            except UnknownType:
                own = f"{raw.get('namespace', '')}.{raw['name']}".lstrip(".")
                old = parse_schema(raw, named_schemas={
                    k: v for k, v in named.items() if k != own})
            self.by_fingerprint.setdefault(_fingerprint(old), old)

    def encode(self, name: str, record: Any) -> bytes:
        """Single-object encoding of `record` with schema `name`."""
        buf = io.BytesIO()
        buf.write(SOE_MAGIC)
        buf.write(self.fingerprints[name])
        try:
            fastavro.schemaless_writer(buf, self.by_name[name], record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SchemaError(f"not a valid {name.rsplit('.', 1)[-1]}: {exc}") from exc
        return buf.getvalue()

    def decode(self, name: str, payload: bytes, *, return_record_name: bool = False) -> Any:
        """Decode a single-object-encoded record, resolving the writer schema to `name`.

        With `return_record_name`, a union of records decodes to (record name, value).
        Raises SchemaError, and nothing else, whatever the bytes.
        """
        if not is_single_object(payload):
            raise SchemaError("not Avro single-object encoding (no 0xC3 0x01 marker)")
        writer = self.by_fingerprint.get(bytes(payload[2:10]))
        if writer is None:
            raise SchemaError(f"unknown schema fingerprint {payload[2:10].hex()}")
        reader = self.by_name[name]
        if writer["name"] != reader["name"]:
            raise SchemaError(f"a {writer['name'].rsplit('.', 1)[-1]}, "
                              f"not a {name.rsplit('.', 1)[-1]}")
        buf = io.BytesIO(payload[10:])
        try:
            if reader is writer:
                record = fastavro.schemaless_reader(buf, self._plain[name], None,
                                                    return_record_name=return_record_name)
            else:
                record = fastavro.schemaless_reader(buf, writer, reader,
                                                    return_record_name=return_record_name)
        except Exception as exc:
            # Hostile bodies make fastavro raise EOFError (lengths past the end),
            # UnicodeDecodeError, IndexError (union or enum index out of range),
            # OverflowError (timestamps beyond year 9999) and more (test_schemas'
            # hypothesis tests find them); every kind means the same: not this schema.
            raise SchemaError(f"bad Avro body: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(payload) - 10:
            raise SchemaError("trailing bytes after the Avro body")
        return record


def _parse_own(raw: Any, named: dict[str, Any]) -> Any:
    """`raw` parsed with a table of only the named types it needs, which `named` (the types
    of the files before it) then takes in as well.

    fastavro copies a parsed schema's table of named types on every read and write
    (parse_schema, before any byte is read). Parsed with the table of every type the
    registry knows, 16 of them, a delivery job's or an attempt record's read or write took
    1.2-1.8 us longer (timeit, alternated: 8.8-11.5 us a call against 7.5-10.2), and a
    delivery makes four.
    """
    own: Any
    try:
        own = parse_schema(raw, named_schemas={})
    except UnknownType:  # it names types of the files before it (event: the data records)
        own = parse_schema(raw, named_schemas=dict(named))
    named.update(own["__named_schemas"])  # its table, as eventschema reads it too
    return own


def _without_logical_types(schema: Any) -> Any:
    """The schema's JSON with every logicalType dropped (the underlying types stay)."""
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(v) for v in schema]
    return schema


def _fingerprint(parsed: Any) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def is_single_object(payload: bytes) -> bool:
    return payload[:2] == SOE_MAGIC and len(payload) >= 10


@cache
def registry() -> Registry:
    return Registry(schemas_dir())
