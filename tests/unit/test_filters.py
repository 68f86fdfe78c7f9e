"""Payload filters: every operator and refusal by example; the laws by Hypothesis; and a
differential test against a reference evaluator written another way (exact fractions for
numbers, tagged normal forms for equality, recursion over the raw filter)."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import strictjson
from streams.core.filters import (
    MAX_FILTER_BYTES,
    MAX_IN,
    MAX_NESTING,
    MAX_NODES,
    MAX_PATH_SEGMENTS,
    Filter,
    FilterError,
    parse_filter,
)

FAST = settings(max_examples=50, deadline=None, database=None, derandomize=True)

DOC = {
    "event": "task.updated",
    "workspace_id": "ws_1",
    "data": {
        "id": "task_1",
        "priority": "high",
        "points": 5,
        "ratio": 0.5,
        "done": False,
        "note": None,
        "tags": ["a", "b"],
        "assignee": {"id": "user_1", "name": "Ada"},
        "due": "2025-10-30",
    },
}


def matches(f: Any, doc: Any = DOC) -> bool:
    return parse_filter(f).matches(doc)


# --- every operator, by example ----------------------------------------------------------

@pytest.mark.parametrize(("f", "expected"), [
    ({}, True),
    ({"event": "task.updated"}, True),
    ({"event": "task.created"}, False),
    ({"data.points": 5.0}, True),                        # 5 == 5.0
    ({"data.done": 0}, False),                           # false is not 0
    ({"data.done": False}, True),
    ({"data.note": None}, True),
    ({"data.missing": None}, False),                     # null is not absence
    ({"data.tags.1": "b"}, True),                        # a digit segment indexes a list
    ({"data.tags.2": "b"}, False),
    ({"data.tags": "a"}, False),                         # equality, not membership
    ({"data.assignee.id": "user_1"}, True),
    ({"data.assignee.id.x": "user_1"}, False),           # through a string: missing
    ({"data.priority": {"$eq": "high"}}, True),
    ({"data.assignee": {"$eq": {"name": "Ada", "id": "user_1"}}}, True),
    ({"data.assignee": {"$eq": {"id": "user_1"}}}, False),
    ({"data.tags": {"$eq": ["a", "b"]}}, True),
    ({"data.tags": {"$eq": ["b", "a"]}}, False),
    ({"data.priority": {"$ne": "low"}}, True),
    ({"data.priority": {"$ne": "high"}}, False),
    ({"data.missing": {"$ne": "x"}}, True),              # missing matches $ne
    ({"data.priority": {"$in": ["low", "high"]}}, True),
    ({"data.priority": {"$in": []}}, False),
    ({"data.points": {"$in": [5.0, "5"]}}, True),
    ({"data.done": {"$in": [0, None]}}, False),
    ({"data.tags": {"$in": [["a", "b"]]}}, True),
    ({"data.missing": {"$in": [None]}}, False),
    ({"data.priority": {"$nin": ["low"]}}, True),
    ({"data.priority": {"$nin": ["high"]}}, False),
    ({"data.missing": {"$nin": ["x"]}}, True),           # missing matches $nin
    ({"data.points": {"$gt": 4}}, True),
    ({"data.points": {"$gt": 5}}, False),
    ({"data.points": {"$gte": 5}}, True),
    ({"data.points": {"$lt": 5.5}}, True),
    ({"data.points": {"$lte": 4.9}}, False),
    ({"data.points": {"$gt": "4"}}, False),              # 5 vs "4": different kinds
    ({"data.priority": {"$gt": 1}}, False),
    ({"data.done": {"$lt": 1}}, False),                  # a bool is not a number
    ({"data.due": {"$gte": "2025-10-01", "$lt": "2025-11-01"}}, True),
    ({"data.missing": {"$lt": 1}}, False),
    ({"data.note": {"$exists": True}}, True),            # null exists
    ({"data.missing": {"$exists": True}}, False),
    ({"data.missing": {"$exists": False}}, True),
    ({"data.priority": {"$exists": False}}, False),
    ({"data.id": {"$prefix": "task_"}}, True),
    ({"data.id": {"$prefix": "user_"}}, False),
    ({"data.points": {"$prefix": "5"}}, False),          # only strings
    ({"$and": [{"event": "task.updated"}, {"data.points": {"$gt": 1}}]}, True),
    ({"$and": [{"event": "task.updated"}, {"data.points": {"$gt": 9}}]}, False),
    ({"$or": [{"event": "x"}, {"data.priority": "high"}]}, True),
    ({"$or": [{"event": "x"}, {"data.priority": "low"}]}, False),
    ({"$not": {"data.priority": "low"}}, True),
    ({"$not": {}}, False),
    ({"event": "task.updated", "data.priority": "low"}, False),   # implicit AND
])
def test_operators(f: dict[str, Any], expected: bool) -> None:
    assert matches(f) is expected


def test_a_document_that_is_not_an_object_matches_only_absence() -> None:
    for doc in (None, 1, "x", [DOC], {"data": [1]}):
        assert not matches({"data.priority": "high"}, doc)
        assert matches({"data.priority": {"$exists": False}}, doc)


# --- every refusal, by its message ---------------------------------------------------------

@pytest.mark.parametrize(("f", "message"), [
    ([], "filter: a filter must be an object"),
    ({"$and": [{}, {"data.priority": {"$gt": True}}]},
     "filter.$and[1].data.priority: $gt needs a number or string"),
    ({"$or": {}}, "filter.$or: $or needs a non-empty list of filters"),
    ({"$and": []}, "filter.$and: $and needs a non-empty list of filters"),
    ({"$not": [1]}, "filter.$not: a filter must be an object"),
    ({"$or": [1]}, "filter.$or[0]: a filter must be an object"),
    ({"$nor": []}, "filter: unknown operator $nor"),
    ({"data.x": {"$regex": "a"}}, "filter.data.x: unknown operator $regex"),
    ({"data.x": {"$in": "a"}}, "filter.data.x: $in needs a list"),
    ({"data.x": {"$nin": {}}}, "filter.data.x: $nin needs a list"),
    ({"data.x": {"$in": list(range(MAX_IN + 1))}},
     f"filter.data.x: $in has {MAX_IN + 1} values, over {MAX_IN}"),
    ({"data.x": {"$lte": None}}, "filter.data.x: $lte needs a number or string"),
    ({"data.x": {"$exists": 1}}, "filter.data.x: $exists needs true or false"),
    ({"data.x": {"$prefix": 1}}, "filter.data.x: $prefix needs a string"),
    ({"data.x": {}}, "filter.data.x: an empty object; use $eq"),
    ({"data.x": {"id": 1}}, "filter.data.x: id is not an operator"),
    ({"data.x": {"$eq": 1, "id": 1}}, "filter.data.x: id is not an operator"),
    ({"data..x": 1}, "filter.data..x: path has an empty segment"),
    ({"": 1}, "filter.: path has an empty segment"),
    ({"data.$x": 1}, "filter.data.$x: a path segment must not start with $"),
    ({"a." * MAX_PATH_SEGMENTS + "a": 1}, f"more than {MAX_PATH_SEGMENTS} segments"),
    ({"a" * 257: 1}, "path longer than 256 characters"),
    ({"data.x": float("nan")}, "filter.data.x: nan is not a JSON number"),
    ({"data.x": {"$eq": (1, 2)}}, "filter.data.x.$eq: a tuple is not a JSON value"),
    ({1: 2}, "filter: keys must be strings"),
    ({"data.x": {"$eq": "x" * MAX_FILTER_BYTES}}, f"over the {MAX_FILTER_BYTES} limit"),
])
def test_refusals_say_where_and_why(f: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(f)
    assert message in str(caught.value)


def test_nesting_and_node_limits() -> None:
    nested: dict[str, Any] = {"event": "x"}
    for _ in range(MAX_NESTING):
        nested = {"$not": nested}
    parse_filter(nested)
    with pytest.raises(FilterError, match=r"nested deeper than 8"):
        parse_filter({"$not": nested})
    parse_filter({f"data.f{i}": i for i in range(MAX_NODES)})
    with pytest.raises(FilterError, match=rf"more than {MAX_NODES} predicates"):
        parse_filter({f"data.f{i}": i for i in range(MAX_NODES + 1)})


def test_empty_filters_inside_logic_count_towards_the_bound() -> None:
    # Each is a predicate called for every event: 1,000 of them passed uncounted.
    parse_filter({"$and": [{}] * (MAX_NODES - 1)})  # and the $and itself: 64
    for op in ("$and", "$or"):
        with pytest.raises(FilterError, match=rf"more than {MAX_NODES} predicates"):
            parse_filter({op: [{}] * MAX_NODES})
    assert parse_filter({}).matches({"data": {}})  # alone, {} still matches everything


def test_hostile_depth_is_refused_without_recursing() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(FilterError, match="nested deeper than 32"):
        parse_filter({"data.x": {"$eq": deep}})


def test_canonical_json_ignores_key_order() -> None:
    a = parse_filter({"event": "x", "data.p": {"$lt": 3, "$gt": 1}})
    b = parse_filter({"data.p": {"$gt": 1, "$lt": 3}, "event": "x"})
    assert a == b and a.to_json() == b.to_json() and hash(a) == hash(b)
    assert a.to_json() == '{"data.p":{"$gt":1,"$lt":3},"event":"x"}'


# --- strategies --------------------------------------------------------------------------

SCALARS = st.sampled_from([None, True, False, 0, 1, 1.0, -1, 2.5, 2**53 + 1, "", "a", "ab", "b"])
KEYS = st.sampled_from(["a", "b", "c", "0", "1"])
SMALL = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
DOCS = st.fixed_dictionaries({}, optional={
    "event": st.sampled_from(["task.created", "task.updated"]) | SMALL,
    "workspace_id": SMALL,
    "data": st.dictionaries(KEYS, SMALL, max_size=4) | SMALL,
})
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
PATHS = st.sampled_from(["event", "workspace_id", "data", "data.a", "data.b", "data.a.0",
                         "data.a.b", "data.0", "data.c.1", "x"])
OPERAND = SMALL.filter(lambda v: not isinstance(v, dict) or not v
                       or not any(k.startswith("$") for k in v))


def _operator() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda v: {"$eq": v}, SMALL), st.builds(lambda v: {"$ne": v}, SMALL),
        st.builds(lambda v: {"$in": v}, st.lists(SMALL, max_size=4)),
        st.builds(lambda v: {"$nin": v}, st.lists(SMALL, max_size=4)),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                  st.sampled_from([0, 1, 1.5, -1, 2**53, "", "a", "b"])),
        st.builds(lambda v: {"$exists": v}, st.booleans()),
        st.builds(lambda v: {"$prefix": v}, st.sampled_from(["", "a", "b", "ab"])),
    )


def _field() -> st.SearchStrategy[dict[str, Any]]:
    value = (SCALARS | st.lists(_operator(), min_size=1, max_size=2).map(
                 lambda ops: {k: v for op in ops for k, v in op.items()}))
    return st.dictionaries(PATHS, value, max_size=3)


FILTERS = st.recursive(
    _field(),
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
        st.builds(lambda f, g: {**f, **g}, inner, _field()),
    ),
    max_leaves=6,
)


# --- a reference evaluator, written differently -------------------------------------------

_NOTHING = object()


def _norm(v: Any) -> Any:
    """A tagged normal form: equal exactly when the JSON values are equal."""
    if v is True or v is False:
        return ("bool", v)
    if v is None:
        return ("null",)
    if isinstance(v, int | float):
        return ("num", Fraction(v))
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, list):
        return ("list", tuple(_norm(x) for x in v))
    return ("obj", frozenset((k, _norm(x)) for k, x in v.items()))


def _resolve(doc: Any, path: str) -> Any:
    here = doc
    for seg in path.split("."):
        if type(here) is dict and seg in here:
            here = here[seg]
        elif type(here) is list and re.fullmatch("[0-9]+", seg) and int(seg) < len(here):
            here = here[int(seg)]
        else:
            return _NOTHING
    return here


def _kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return "num"
    return "str" if isinstance(v, str) else None


def _ref_op(op: str, arg: Any, value: Any) -> bool:
    here = value is not _NOTHING
    if op == "$exists":
        return here == arg
    if op in ("$ne", "$nin"):
        return not _ref_op({"$ne": "$eq", "$nin": "$in"}[op], arg, value)
    if not here:
        return False
    if op == "$eq":
        return bool(_norm(value) == _norm(arg))
    if op == "$in":
        return _norm(value) in {_norm(a) for a in arg}
    if op == "$prefix":
        return isinstance(value, str) and value[:len(arg)] == arg
    if _kind(value) is None or _kind(value) != _kind(arg):
        return False
    a, b = (Fraction(value), Fraction(arg)) if _kind(arg) == "num" else (value, arg)
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def reference(f: dict[str, Any], doc: Any) -> bool:
    for key, arg in f.items():
        if key == "$and":
            ok = all(reference(g, doc) for g in arg)
        elif key == "$or":
            ok = any(reference(g, doc) for g in arg)
        elif key == "$not":
            ok = not reference(arg, doc)
        elif isinstance(arg, dict):
            ok = all(_ref_op(op, a, _resolve(doc, key)) for op, a in arg.items())
        else:
            ok = _ref_op("$eq", arg, _resolve(doc, key))
        if not ok:
            return False
    return True


# --- laws ---------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None, database=None, derandomize=True)
@given(FILTERS, st.lists(DOCS, min_size=1, max_size=4))
def test_agrees_with_the_reference_evaluator(f: dict[str, Any], docs: list[Any]) -> None:
    compiled = parse_filter(f)
    for doc in docs:
        assert compiled.matches(doc) is reference(f, doc), (f, doc)


@FAST
@given(FILTERS, ANY_JSON | DOCS)
def test_matches_never_raises(f: dict[str, Any], doc: Any) -> None:
    assert parse_filter(f).matches(doc) in (True, False)


@FAST
@given(FILTERS, DOCS)
def test_not_is_negation(f: dict[str, Any], doc: Any) -> None:
    assert parse_filter({"$not": f}).matches(doc) is not parse_filter(f).matches(doc)


@FAST
@given(st.lists(FILTERS, min_size=1, max_size=4), DOCS)
def test_and_or_are_all_and_any(fs: list[dict[str, Any]], doc: Any) -> None:
    parts = [parse_filter(f).matches(doc) for f in fs]
    assert parse_filter({"$and": fs}).matches(doc) is all(parts)
    assert parse_filter({"$or": fs}).matches(doc) is any(parts)


@FAST
@given(FILTERS, st.lists(DOCS, max_size=4))
def test_to_json_round_trips(f: dict[str, Any], docs: list[Any]) -> None:
    compiled = parse_filter(f)
    again = parse_filter(strictjson.loads(compiled.to_json()))
    assert again == compiled and again.to_json() == compiled.to_json()
    assert [again.matches(d) for d in docs] == [compiled.matches(d) for d in docs]


@FAST
@given(ANY_JSON | st.dictionaries(PATHS | st.sampled_from(["$and", "$or", "$not", "$x"]),
                                  ANY_JSON | _field(), max_size=3))
def test_any_json_parses_or_is_refused(obj: Any) -> None:
    try:
        compiled = parse_filter(obj)
    except FilterError as exc:
        assert str(exc).startswith("filter")
        return
    assert isinstance(compiled, Filter)
    assert len(compiled.to_json().encode()) <= MAX_FILTER_BYTES
    json.loads(compiled.to_json())
