"""streams.core.avrobinary and the attempt record it encodes, against fastavro.

Differential: whatever the record holds (any text, lone surrogates included; any int,
beyond 64 bits included; the wrong types), AttemptRecord.encode gives fastavro's bytes,
or fails as fastavro does (SchemaError). The schema's fields are checked against what the
hand path writes, so a schema change cannot leave it behind unnoticed.
"""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import avrobinary
from streams.core.schemas import DELIVERY_ATTEMPT, SchemaError, registry
from streams.delivery.models import SUCCESS, AttemptRecord

_ANY_TEXT = st.text(max_size=200)  # surrogates too: not UTF-8, fastavro refuses them
_ANY_INT = st.integers() | st.integers(-(2**64), 2**64) | st.integers(-3000, 3000)
_WRONG = st.floats(allow_nan=False) | st.binary(max_size=8) | st.booleans()


def _fastavro(record: AttemptRecord) -> bytes | SchemaError:
    try:
        return registry().encode(DELIVERY_ATTEMPT, record.to_record())
    except SchemaError as exc:
        return exc


def _hand(record: AttemptRecord) -> bytes | SchemaError:
    try:
        return record.encode()
    except SchemaError as exc:
        return exc


def _same(record: AttemptRecord) -> None:
    ours, theirs = _hand(record), _fastavro(record)
    if isinstance(theirs, SchemaError):
        assert isinstance(ours, SchemaError), (record, ours)
    else:
        assert ours == theirs, record


@settings(max_examples=500, deadline=None)
@given(texts=st.lists(_ANY_TEXT, min_size=6, max_size=6),
       ints=st.lists(_ANY_INT, min_size=4, max_size=4),
       code=st.none() | _ANY_INT, error=st.none() | _ANY_TEXT, after=st.none() | _ANY_INT)
def test_an_attempt_record_is_fastavros_bytes_or_fails_as_fastavro_does(
        texts: list[str], ints: list[int], code: int | None, error: str | None,
        after: int | None) -> None:
    record = AttemptRecord(texts[0], texts[1], texts[2], texts[3], texts[4], ints[0],
                           texts[5], code, ints[1], error, ints[2], after)
    _same(record)


@given(field=st.sampled_from(("delivery_id", "attempt", "response_code", "error",
                              "attempted_at", "next_attempt_at")),
       wrong=_WRONG)
def test_a_field_of_the_wrong_type_fails_or_encodes_as_fastavro_does(
        field: str, wrong: object) -> None:
    base = AttemptRecord("dlv_1", "wh_1", "ws_1", "task.created", "evt_1", 1, SUCCESS,
                         200, 3, None, 1_760_437_800_123)
    _same(AttemptRecord(**{**base.__dict__, field: wrong}))


@given(ints=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20))
def test_longs_are_fastavros(ints: list[int]) -> None:
    for n in ints:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, "long", n)
        assert avrobinary.long(n) == out.getvalue()


_UTF8 = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(ints=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=2, max_size=2),
       texts=st.lists(_UTF8, min_size=6, max_size=6), code=st.none() | st.integers(100, 599),
       error=st.none() | _UTF8,
       stamps=st.tuples(st.integers(0, 253_402_300_799_999),
                        st.none() | st.integers(0, 253_402_300_799_999)))
def test_what_it_writes_reads_back(ints: list[int], texts: list[str], code: int | None,
                                   error: str | None, stamps: tuple[int, int | None]) -> None:
    record = AttemptRecord(texts[0], texts[1] or "wh", texts[2], texts[3], texts[4], ints[0],
                           texts[5], code, ints[1], error, stamps[0], stamps[1])
    assert AttemptRecord.decode(record.encode()) == record


def test_the_schema_has_the_fields_the_hand_path_writes_in_that_order() -> None:
    def kind(t: object) -> object:
        if isinstance(t, list):
            return [kind(branch) for branch in t]
        return t["type"] if isinstance(t, dict) else t

    schema = registry().by_name[DELIVERY_ATTEMPT]
    assert [(f["name"], kind(f["type"])) for f in schema["fields"]] == [
        ("delivery_id", "string"), ("webhook_id", "string"), ("workspace_id", "string"),
        ("event_type", "string"), ("event_id", "string"), ("attempt", "int"),
        ("status", "string"), ("response_code", ["null", "int"]),
        ("response_time_ms", "int"), ("error", ["null", "string"]),
        ("attempted_at", "long"), ("next_attempt_at", ["null", "long"])]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1.0, "1", None])
def test_a_long_it_cannot_write_is_refused_not_written_wrong(value: object) -> None:
    with pytest.raises((TypeError, OverflowError)):
        avrobinary.long(value)  # type: ignore[arg-type]
