"""streams.core.schemas: the .avsc files, single-object encoding, and schema evolution."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import schemas
from streams.core.schemas import (
    CONTROL_COMMAND,
    DEAD_LETTER,
    DELIVERY_ATTEMPT,
    DELIVERY_JOB,
    EVENT,
    FAMILY_DATA,
    SOE_MAGIC,
    SUBSCRIPTION,
    Registry,
    SchemaError,
    is_single_object,
    registry,
)
from streams.core.timeutil import to_ms
from streams.subscriptions.model import Subscription

from ..support import hostile

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
T0 = 1_760_437_800_123  # 2025-10-14T10:30:00.123Z in epoch ms


def _ms(value: Any) -> Any:
    """fastavro reads timestamp-millis as aware datetimes; compare as epoch ms."""
    if isinstance(value, datetime):
        assert value.tzinfo is not None
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: _ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ms(v) for v in value]
    return value


# -- an independent CRC-64-AVRO, straight from the Avro specification -----------------
_EMPTY = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _fp_table()


def _crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


# -- records -------------------------------------------------------------------------
EVENT_DATA: dict[str, dict[str, Any]] = {
    "task": {"id": "task_789", "name": "Design homepage", "status": "todo", "priority": "high",
             "project_id": "proj_123", "assignee_id": "user_456", "created_by": "user_789",
             "due_date": "2025-10-30"},
    "project": {"id": "proj_1", "name": "Site", "status": "archived",
                "archived_at": "2025-10-14T10:30:00Z"},
    "comment": {"id": "cmt_1", "task_id": "task_789", "author_id": "user_1",
                "body": "Looks good ✓"},
    "user": {"id": "user_1", "email": "a@example.com", "role": "admin", "previous_role": "member"},
    "webhook": {"webhook_id": "wh_1", "url": "https://hooks.example.com/in",
                "consecutive_failures": 50, "failure_limit": 100, "last_response_code": 503,
                "last_error": "HTTP 503"},
    "delivery": {"delivery_id": "dlv_1", "webhook_id": "wh_1", "event_id": "evt_1",
                 "event_type": "task.created", "attempts": 4, "reason": "attempts_exhausted",
                 "last_error": "timed out after 10s"},
}

JOB: dict[str, Any] = {
    "delivery_id": "dlv_1", "webhook_id": "wh_1", "workspace_id": "ws_1", "event_id": "evt_1",
    "event_type": "task.created", "event_timestamp": "2025-10-14T10:30:00Z",
    "data_json": '{"id":"task_789","name":"Design homepage"}', "attempt": 2,
    "created_at": T0, "due_at": T0 + 60_000, "source_topic": "domain.task",
    "source_partition": 3, "source_offset": 2**40,
    "outcomes": [{"attempt": 1, "attempted_at": T0 + 5, "response_code": 503,
                  "response_time_ms": 12, "error": "HTTP 503"}],
}

RECORDS: dict[str, dict[str, Any]] = {
    CONTROL_COMMAND: {
        "op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1",
        "webhook": {"url": "https://example.com/h", "events": ["task.*", "user.added"],
                    "secret": "s3cret-s3cret-s3cret", "active": True, "description": "d",
                    "signature_scheme": "standard-webhooks",
                    "headers": {"X-Token": "enc:v1:k1:abc"}, "filter": '{"data.p":1}',
                    "rate_limit": 20},
        "reason": None, "requested_at": "2025-10-14T10:30:00Z", "command_id": "cmd_1",
    },
    SUBSCRIPTION: {
        "id": "wh_1", "workspace_id": "ws_1", "url": "https://example.com/h",
        "events": ["*"], "secret": "whsec_x", "active": False, "created_at": T0,
        "updated_at": T0 + 1, "disabled_reason": "disabled by operator", "description": None,
        "previous_secret": "enc:v1:k1:abc", "previous_secret_until": T0 + 2,
        "signature_scheme": "hookstream", "last_command": "cmd_1",
        "headers": {"X-Token": "enc:v1:k1:abc"}, "filter": None, "rate_limit": None,
    },
    DELIVERY_JOB: JOB,
    DELIVERY_ATTEMPT: {
        "delivery_id": "dlv_1", "webhook_id": "wh_1", "workspace_id": "ws_1",
        "event_type": "task.created", "event_id": "evt_1", "attempt": 1, "status": "retrying",
        "response_code": None, "response_time_ms": 10_000, "error": "timed out after 10s",
        "attempted_at": T0, "next_attempt_at": T0 + 60_000,
    },
    DEAD_LETTER: {"job": JOB, "reason": "attempts_exhausted", "error": "HTTP 500",
                  "dead_at": T0 + 999},
}


def _event_record(family: str) -> dict[str, Any]:
    return {"id": f"evt_{family}", "event": f"{family}.created" if family != "user" else
            "user.added", "timestamp": "2025-10-14T10:30:00Z", "workspace_id": "ws_1",
            "data": (FAMILY_DATA[family], EVENT_DATA[family])}


def _full_data(family: str) -> dict[str, Any]:
    schema = registry().by_name[FAMILY_DATA[family]]
    given = EVENT_DATA[family]
    return {f["name"]: given.get(f["name"]) for f in schema["fields"]}


# -- loading -------------------------------------------------------------------------
def test_every_avsc_file_is_loaded() -> None:
    files = sorted(SCHEMAS_DIR.glob("*.avsc"))
    assert len(files) == 14
    reg = Registry(SCHEMAS_DIR)
    for path in files:
        raw = json.loads(path.read_text())
        assert f"{raw['namespace']}.{raw['name']}" in reg.by_name, path.name
    assert set(reg.fingerprints) == set(reg.by_name)


def test_the_delivery_schemas_carry_only_their_own_named_types() -> None:
    """fastavro copies a parsed schema's table of named types on each read and write: the
    two a delivery reads and writes hold just theirs, not all 16 the registry knows."""
    reg = registry()
    for name, own in ((DELIVERY_JOB, {DELIVERY_JOB, "io.hookstream.delivery.AttemptOutcome"}),
                      (DELIVERY_ATTEMPT, {DELIVERY_ATTEMPT})):
        for parsed in (reg.by_name[name], reg._plain[name]):
            assert set(parsed["__named_schemas"]) == own
    # A schema that names types of the files before it still has them (and only those).
    event_types = set(reg.by_name[EVENT]["__named_schemas"])
    assert event_types >= {EVENT, *FAMILY_DATA.values()}
    assert DELIVERY_JOB not in event_types
    assert len(reg.named) > len(event_types)


def test_fingerprints_are_distinct() -> None:
    fps = list(registry().fingerprints.values())
    assert len(set(fps)) == len(fps)
    assert all(len(fp) == 8 for fp in fps)


def test_registry_is_cached() -> None:
    assert registry() is registry()


def test_schemas_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOOKSTREAM_SCHEMAS_DIR", str(tmp_path))
    assert schemas.schemas_dir() == tmp_path
    monkeypatch.delenv("HOOKSTREAM_SCHEMAS_DIR")
    assert schemas.schemas_dir() == SCHEMAS_DIR


# -- fingerprints and single-object encoding ------------------------------------------
def test_spec_vector_for_null() -> None:
    hex_fp = fingerprint(to_parsing_canonical_form(parse_schema("null")), "CRC-64-AVRO")
    assert int.from_bytes(bytes.fromhex(hex_fp), "little") == 7195948357588979594
    assert _crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("name", [*sorted(RECORDS), EVENT])
def test_fingerprint_is_little_endian_crc64_of_canonical_form(name: str) -> None:
    reg = registry()
    canonical = to_parsing_canonical_form(reg.by_name[name])
    expected = _crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert reg.fingerprints[name] == expected


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_single_object_header(name: str) -> None:
    payload = registry().encode(name, RECORDS[name])
    assert payload[:2] == b"\xc3\x01" == SOE_MAGIC
    assert payload[2:10] == registry().fingerprints[name]
    assert is_single_object(payload)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_single_object_body_is_plain_avro(name: str) -> None:
    reg = registry()
    payload = reg.encode(name, RECORDS[name])
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, reg.by_name[name], RECORDS[name])
    assert payload[10:] == buf.getvalue()


# -- round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip(name: str) -> None:
    reg = registry()
    decoded = reg.decode(name, reg.encode(name, RECORDS[name]))
    assert _ms(decoded) == RECORDS[name]


@pytest.mark.parametrize("family", sorted(FAMILY_DATA))
def test_event_round_trip_each_family(family: str) -> None:
    reg = registry()
    record = _event_record(family)
    decoded = reg.decode(EVENT, reg.encode(EVENT, record))
    assert decoded == {**record, "data": _full_data(family)}


def test_event_without_id() -> None:
    reg = registry()
    record = {**_event_record("task"), "id": None}
    assert reg.decode(EVENT, reg.encode(EVENT, record))["id"] is None
    del record["id"]
    assert reg.decode(EVENT, reg.encode(EVENT, record))["id"] is None


def test_timestamps_of_the_current_version_decode_as_epoch_ms() -> None:
    """The same bytes as datetimes' (logical types are read as their longs), and what
    every caller turns them into anyway (to_ms, which reads both forms alike)."""
    reg = registry()
    decoded = reg.decode(SUBSCRIPTION, reg.encode(SUBSCRIPTION, RECORDS[SUBSCRIPTION]))
    when = datetime(2025, 10, 14, 10, 30, 0, 123000, tzinfo=UTC)
    assert decoded["created_at"] == to_ms(when) == 1_760_437_800_123


@pytest.mark.parametrize("ms", [to_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
                                + 1, -62_135_596_800_001, 2**62])
def test_a_timestamp_no_datetime_can_hold_is_refused_as_before(ms: int) -> None:
    """fastavro refused them while it made datetimes; the decoders still do, so no API read
    ever meets a time it cannot show."""
    reg = registry()
    body = io.BytesIO()
    body.write(SOE_MAGIC)
    body.write(reg.fingerprints[SUBSCRIPTION])
    # fastavro writes an int for a timestamp-millis as it is, unchecked.
    fastavro.schemaless_writer(body, reg.by_name[SUBSCRIPTION],
                               {**RECORDS[SUBSCRIPTION], "created_at": ms})
    with pytest.raises(SchemaError, match="outside years 1 to 9999"):
        Subscription.decode(body.getvalue())


@pytest.mark.parametrize(
    ("name", "record"),
    [
        (SUBSCRIPTION, {k: v for k, v in RECORDS[SUBSCRIPTION].items() if k != "url"}),
        (DELIVERY_JOB, {**JOB, "attempt": "one"}),
        (EVENT, {**_event_record("task"), "data": {"name": "no id"}}),
        (EVENT, {**_event_record("task"), "workspace_id": 5}),
    ],
)
def test_encode_invalid_record_raises_schema_error(name: str, record: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        registry().encode(name, record)


# -- decode errors ---------------------------------------------------------------------
def _valid() -> bytes:
    return registry().encode(SUBSCRIPTION, RECORDS[SUBSCRIPTION])


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_decode_truncated_body(cut: int) -> None:
    with pytest.raises(SchemaError, match="bad Avro body"):
        registry().decode(SUBSCRIPTION, _valid()[:-cut])


def test_decode_header_only() -> None:
    header = _valid()[:10]
    with pytest.raises(SchemaError, match="bad Avro body"):
        registry().decode(SUBSCRIPTION, header)


def test_decode_unknown_fingerprint() -> None:
    payload = _valid()
    forged = payload[:2] + bytes(b ^ 0xFF for b in payload[2:10]) + payload[10:]
    with pytest.raises(SchemaError, match="unknown schema fingerprint"):
        registry().decode(SUBSCRIPTION, forged)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc3", b"\xc3\x01", b"\xc3\x01\x00\x00", b'{"id":"x"}', b"\xc3\x02" + bytes(20),
     b"\x01\xc3" + bytes(20)],
)
def test_decode_without_magic(payload: bytes) -> None:
    assert not is_single_object(payload)
    with pytest.raises(SchemaError, match="single-object"):
        registry().decode(SUBSCRIPTION, payload)


def test_decode_without_magic_but_valid_body() -> None:
    with pytest.raises(SchemaError):
        registry().decode(SUBSCRIPTION, b"\x00\x00" + _valid()[2:])


@pytest.mark.parametrize("extra", [b"\x00", b"garbage"])
def test_decode_trailing_bytes(extra: bytes) -> None:
    with pytest.raises(SchemaError, match="trailing"):
        registry().decode(SUBSCRIPTION, _valid() + extra)


def test_decode_with_unrelated_writer_schema() -> None:
    job = registry().encode(DELIVERY_JOB, JOB)
    with pytest.raises(SchemaError):
        registry().decode(SUBSCRIPTION, job)


def test_schema_error_is_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


# -- schema evolution -----------------------------------------------------------------
def _task_data_v1_v2() -> tuple[Any, Any]:
    v1 = json.loads((SCHEMAS_DIR / "task_data.avsc").read_text())
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "labels", "type": ["null", {"type": "array", "items": "string"}],
                         "default": None})
    return parse_schema(v1), parse_schema(v2)


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _read(body: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    buf = io.BytesIO(body)
    record: dict[str, Any] = fastavro.schemaless_reader(buf, writer, reader)  # type: ignore[assignment]
    assert buf.tell() == len(body)
    return record


def test_evolution_old_writer_new_reader() -> None:
    v1, v2 = _task_data_v1_v2()
    body = _write(v1, {"id": "t1", "name": "Old"})
    decoded = _read(body, v1, v2)
    assert decoded["id"] == "t1"
    assert decoded["name"] == "Old"
    assert decoded["labels"] is None


def test_evolution_new_writer_old_reader() -> None:
    v1, v2 = _task_data_v1_v2()
    body = _write(v2, {"id": "t2", "name": "New", "labels": ["a", "b"]})
    decoded = _read(body, v2, v1)
    assert decoded["id"] == "t2"
    assert decoded["name"] == "New"
    assert "labels" not in decoded


def test_evolution_changes_the_fingerprint() -> None:
    v1, v2 = _task_data_v1_v2()
    fp1 = fingerprint(to_parsing_canonical_form(v1), "CRC-64-AVRO")
    fp2 = fingerprint(to_parsing_canonical_form(v2), "CRC-64-AVRO")
    assert fp1 != fp2
    assert bytes.fromhex(fp1) == registry().fingerprints[FAMILY_DATA["task"]]


def test_records_written_by_a_previous_schema_version_still_decode() -> None:
    """A compacted topic keeps old records: the v1 Subscription must read as the current one."""
    import json as _json

    from fastavro.schema import fingerprint as _fp
    from fastavro.schema import parse_schema as _parse
    from fastavro.schema import to_parsing_canonical_form as _pcf

    from streams.core.schemas import schemas_dir
    from streams.subscriptions.model import Subscription

    v1 = _parse(_json.loads((schemas_dir() / "previous" / "subscription.v1.avsc").read_text()),
                named_schemas={})
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + bytes.fromhex(_fp(_pcf(v1), "CRC-64-AVRO")))
    fastavro.schemaless_writer(buf, v1, {
        "id": "wh_1", "workspace_id": "ws_1", "url": "https://example.com/h", "events": ["*"],
        "secret": "enc:v1:k1:x", "active": True, "created_at": 1, "updated_at": 2,
        "disabled_reason": None, "description": None})
    sub = Subscription.decode(buf.getvalue())
    assert (sub.id, sub.signature_scheme, sub.last_command) == ("wh_1", "hookstream", None)


# -- hostile bytes ---------------------------------------------------------------------
#: Every record type an input topic carries, and the two whose previous versions are read.
_DECODED = (EVENT, CONTROL_COMMAND, DELIVERY_JOB, DEAD_LETTER, DELIVERY_ATTEMPT, SUBSCRIPTION)


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_DECODED), payload=hostile.hostile_bytes())
def test_decode_raises_only_schema_error_whatever_the_bytes(name: str, payload: bytes) -> None:
    try:
        registry().decode(name, payload, return_record_name=True)
    except SchemaError as exc:
        assert str(exc)


def test_what_fastavro_raises_on_hostile_bodies() -> None:
    """Why Registry.decode turns every Exception into SchemaError: on damaged bodies fastavro
    raises many kinds, found here rather than guessed, and all of them are Exceptions (none
    a bare BaseException that a worker must let through, like KeyboardInterrupt)."""
    samples = hostile.valid_samples()
    names = {"event": EVENT, "command": CONTROL_COMMAND, "job": DELIVERY_JOB,
             "dead letter": DEAD_LETTER, "attempt record": DELIVERY_ATTEMPT}
    by_fingerprint = {payload[2:10]: names[kind] for kind, payload in samples.items()}
    seen: dict[type[BaseException], int] = {}

    @settings(max_examples=800, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(hostile.mutated_avro(samples))
    def read(payload: bytes) -> None:
        schema = registry().by_name[by_fingerprint[payload[2:10]]]
        try:
            fastavro.schemaless_reader(io.BytesIO(payload[10:]), schema, None)
        except BaseException as exc:  # what we are finding out
            seen[type(exc)] = seen.get(type(exc), 0) + 1

    read()
    assert all(issubclass(kind, Exception) for kind in seen), seen
    # The damage is real: the common kinds all occur (and RecursionError can not: our
    # schemas are not recursive).
    assert {EOFError, UnicodeDecodeError, IndexError} <= set(seen), seen
