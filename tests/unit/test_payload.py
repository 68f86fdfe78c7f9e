"""streams.core.payload: the body a receiver can re-create with JSON.stringify(JSON.parse(body))."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.payload import MAX_DEPTH, NotRepresentable, dumps, webhook_body


def _roundtrip(body: bytes) -> bytes:
    """Python's spelling of JSON.stringify(JSON.parse(body))."""
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()


DATA_CASES: list[dict[str, Any]] = [
    {"id": "task_789", "name": "Design homepage", "status": "todo", "priority": "high"},
    {"z": 1, "a": 2, "m": {"y": [3, 2, 1], "b": None}},
    {"id": "t", "name": "Café ☕ 日本語 🎉", "quote": 'he said "hi"\\', "nl": "a\nb\tc"},
    {"id": "t", "ctrl": "\u0001\u001f\u007f", "seps": "\u2028\u2029"},
    {"id": "t", "n": 1.0, "f": 2.5, "neg": -3.0, "big": 1e20, "list": [1.0, 0.1, True, False]},
    {},
]


@pytest.mark.parametrize("data", DATA_CASES)
def test_body_survives_parse_and_reserialize(data: dict[str, Any]) -> None:
    body = webhook_body("evt_1", "task.created", "2025-10-14T10:30:00Z", "wh_1", dumps(data))
    assert isinstance(body, bytes)
    assert _roundtrip(body) == body


def test_top_level_key_order() -> None:
    body = webhook_body("evt_1", "task.created", "2025-10-14T10:30:00Z", "wh_1", '{"id":"t"}')
    assert body == (
        b'{"id":"evt_1","event":"task.created","timestamp":"2025-10-14T10:30:00Z",'
        b'"webhook_id":"wh_1","data":{"id":"t"}}'
    )
    assert list(json.loads(body)) == ["id", "event", "timestamp", "webhook_id", "data"]


def test_data_key_order_kept() -> None:
    data = {"zeta": 1, "alpha": 2, "mid": {"z": 0, "a": 1}}
    body = webhook_body("e", "task.updated", "2025-01-01T00:00:00Z", "w", dumps(data))
    parsed = json.loads(body)
    assert list(parsed["data"]) == ["zeta", "alpha", "mid"]
    assert list(parsed["data"]["mid"]) == ["z", "a"]
    assert body.endswith(b'"data":{"zeta":1,"alpha":2,"mid":{"z":0,"a":1}}}')


def test_data_json_spliced_verbatim() -> None:
    data_json = '{"b":"x","a":[1,2]}'
    body = webhook_body("e", "task.updated", "2025-01-01T00:00:00Z", "w", data_json)
    assert body.endswith(b',"data":' + data_json.encode() + b"}")


def test_unicode_not_escaped() -> None:
    data = {"id": "t", "name": "Café 日本 🎉"}
    body = webhook_body("evt_é", "task.created", "2025-01-01T00:00:00Z", "wh_日", dumps(data))
    assert b"\\u" not in body
    assert "Café 日本 🎉".encode() in body
    assert '"id":"evt_é"'.encode() in body
    assert '"webhook_id":"wh_日"'.encode() in body
    assert json.loads(body)["data"]["name"] == "Café 日本 🎉"


def test_header_strings_are_escaped() -> None:
    body = webhook_body('e"1\\', "task.created", "2025-01-01T00:00:00Z", "w\n", "{}")
    parsed = json.loads(body)
    assert parsed["id"] == 'e"1\\'
    assert parsed["webhook_id"] == "w\n"
    assert _roundtrip(body) == body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-3.0, "-3"),
        (-0.0, "0"),
        (0.0, "0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (123456789.123, "123456789.123"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        ({"a": [1.0, {"b": 2.0}]}, '{"a":[1,{"b":2}]}'),
        ({"b": 1, "a": "é"}, '{"b":1,"a":"é"}'),
        (True, "true"),
        (None, "null"),
        ("\u0001\n", '"\\u0001\\n"'),
    ],
)
def test_dumps_like_json_stringify(value: Any, expected: str) -> None:
    assert dumps(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_dumps_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        dumps({"x": value})


# Expected strings were printed by Node's JSON.stringify (node -e 'JSON.stringify(1e-5)').
@pytest.mark.parametrize(
    ("value", "js"),
    [(0.00001, "0.00001"), (0.000001, "0.000001"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7")],
)
def test_dumps_small_floats_like_json_stringify(value: float, js: str) -> None:
    assert dumps(value) == js


# -- nesting -----------------------------------------------------------------------------
def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def test_nesting_up_to_the_limit_is_written() -> None:
    value = _nested(MAX_DEPTH)
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
def test_deeper_nesting_is_not_representable(depth: int) -> None:
    # A NotRepresentable, never a RecursionError, however deep.
    with pytest.raises(NotRepresentable, match=f"nested more than {MAX_DEPTH} levels"):
        dumps(_nested(depth))


@settings(max_examples=300)
@given(st.text(), st.text(), st.text(), st.text())
def test_body_head_is_what_dumps_writes(event_id: str, event_type: str, timestamp: str,
                                        webhook_id: str) -> None:
    """Differential: the head's fast encoder and the general serializer agree on any
    text, lone surrogates included (both refuse those)."""
    fields = {"id": event_id, "event": event_type, "timestamp": timestamp,
              "webhook_id": webhook_id}
    try:
        expected: bytes | None = f'{dumps(fields)[:-1]},"data":{{}}}}'.encode()
    except NotRepresentable:
        expected = None
    if expected is None:
        with pytest.raises(NotRepresentable, match="surrogate"):
            webhook_body(event_id, event_type, timestamp, webhook_id, "{}")
    else:
        assert webhook_body(event_id, event_type, timestamp, webhook_id, "{}") == expected
        assert _roundtrip(expected) == expected


def test_lone_surrogate_in_the_head_is_refused() -> None:
    with pytest.raises(NotRepresentable, match="surrogate"):
        webhook_body("evt_\ud800", "task.created", "2025-01-01T00:00:00Z", "wh_1", "{}")
