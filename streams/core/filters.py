"""Payload filters: which events a webhook wants beyond its event types. Pure.

A filter is a JSON object judged against the document

    {"event": <type>, "workspace_id": <id>, "data": {...}}

    {"data.priority": "high"}                          equality
    {"data.priority": {"$in": ["high", "urgent"]}}     operators: $eq $ne $in $nin $gt $gte
                                                       $lt $lte $exists $prefix
    {"$or": [f, ...]}, {"$and": [f, ...]}, {"$not": f} logic
    {"event": "task.updated", "data.points": {"$gte": 3, "$lt": 8}}   several keys: AND

The semantics are MongoDB's where they are sensible; where we decided otherwise, or Mongo
leaves it open, the rule is here:
- Paths are dotted from the document's root. A segment of ASCII digits indexes a list
  (`data.tags.0`); on an object it is a key like any other. There is no implicit descent
  into lists (Mongo's `tags.name` over a list of objects), and `{"data.tags": "x"}` does not
  mean "tags contains x": equality is equality. A key holding a dot cannot be reached.
- A missing path (absent key, index past the end, a step through a non-container) matches
  only `$exists: false`, `$ne` and `$nin`, as in Mongo. `null` is a value, not an absence:
  `{"data.x": null}` matches only an explicit null, and `$exists: true` matches it.
- Equality is JSON's, not Python's: 1 == 1.0, but true is not 1 and false is not 0;
  objects are equal with the same keys and equal values, in any order; lists element-wise.
- $gt, $gte, $lt, $lte take a number or a string, and compare only with a value of the same
  kind: `1 < "a"` is no match (never an error), and a bool is not a number. Strings compare
  by code point, so ISO 8601 times written alike compare chronologically.
- $in and $nin take a list (at most MAX_IN values) and use the equality above; $prefix takes
  a string and matches only strings; $exists takes a bool. No regular expressions: a
  tenant's pattern would run on our fan-out, per event, per subscription.
- An object as a field's value must be an operator object: an object literal is compared
  with `$eq` only. Mongo compares `{"data.assignee": {"id": "u1"}}` as a whole document,
  which silently fails once the assignee gains a field; the dotted path is what people mean.
- `{}` matches everything (Mongo's empty query); `$and` and `$or` need at least one filter,
  since `$or: []` matching nothing is a surprise nobody asks for.

`parse_filter` validates and compiles into closures, so `Filter.matches` is a few calls per
predicate and never raises, whatever JSON document it is given: the fan-out runs it for
every event and every subscription. `Filter.to_json` is the canonical form to store.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

#: Serialized size of a filter (compact, UTF-8): stored on every subscription and held in
#: every worker's memory; 4 KiB is ample for hand-written filters (Svix caps its JS
#: transformation far higher, but that is code; this is a predicate).
MAX_FILTER_BYTES: Final = 4096
#: Nesting of $and / $or / $not: deeper is never needed by hand and costs recursion.
MAX_NESTING: Final = 8
#: Containers inside one another anywhere in the filter, $eq's literals included. Checked
#: first, without recursion, so a hostile `[[[[...` is refused before anything recurses.
MAX_JSON_DEPTH: Final = 32
#: Predicates and logical operators in one filter: bounds the work per event.
MAX_NODES: Final = 64
#: Values in one $in / $nin list.
MAX_IN: Final = 100
#: A path's characters and segments: documents are seldom deeper, and long paths are typos.
MAX_PATH_CHARS: Final = 256
MAX_PATH_SEGMENTS: Final = 16

_LOGIC = ("$and", "$or", "$not")
_COMPARE = ("$gt", "$gte", "$lt", "$lte")
OPERATORS: Final = ("$eq", "$ne", "$in", "$nin", *_COMPARE, "$exists", "$prefix")

Predicate = Callable[[Any], bool]


class FilterError(ValueError):
    """A filter we refuse: `field` says where (e.g. `filter.$or[1].data.x`), `reason` why;
    the message is both (`filter.$or[1].data.x: ...`). Kept apart because a key may itself
    hold ": ", so the message cannot be split back into them (as core.headers.HeaderError)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class _Missing:
    """The value at a path that leads nowhere (distinct from JSON null)."""

    __slots__ = ()


MISSING: Final = _Missing()


class Filter:
    """A compiled filter. Equal filters (same canonical JSON) compare equal."""

    __slots__ = ("_json", "_match")

    def __init__(self, canonical: str, match: Predicate) -> None:
        self._json = canonical
        self._match = match

    def matches(self, document: Any) -> bool:
        """Whether `document` (`{"event", "workspace_id", "data"}`) passes; never raises."""
        return self._match(document)

    def to_json(self) -> str:
        """Compact JSON, keys sorted: the same string for filters differing only in key order."""
        return self._json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other._json == self._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __repr__(self) -> str:
        return f"Filter({self._json})"


@functools.lru_cache(maxsize=1 << 16)
def stored(text: str) -> Filter:
    """A subscription's stored filter (its canonical JSON), compiled once: the fan-out asks
    for every event, and many subscriptions share one filter."""
    return parse_filter(json.loads(text))


def parse_filter(obj: Any) -> Filter:
    """Validate a filter (a JSON value, as json.loads gives it) and compile it.

    Raises FilterError, and nothing else, for any value.
    """
    _check_shape(obj)
    try:
        canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError) as exc:  # unreachable after _check_shape; kept as a guard
        raise FilterError("filter", f"not JSON: {exc}") from None
    size = len(canonical.encode("utf-8", "surrogatepass"))
    if size > MAX_FILTER_BYTES:
        raise FilterError("filter", f"{size} bytes as JSON, over the {MAX_FILTER_BYTES} limit")
    compiler = _Compiler()
    match = compiler.filter(obj, "filter", 0)
    return Filter(canonical, match)


def _check_shape(obj: Any) -> None:
    """JSON types only (str keys, finite numbers), nested at most MAX_JSON_DEPTH; no recursion."""
    stack: list[tuple[Any, str, int]] = [(obj, "filter", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_JSON_DEPTH:
            raise FilterError(where, f"nested deeper than {MAX_JSON_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise FilterError(where, "keys must be strings")
                stack.append((item, f"{where}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise FilterError(where, f"{value} is not a JSON number")
        elif not (value is None or isinstance(value, str | int)):
            raise FilterError(where, f"a {type(value).__name__} is not a JSON value")


class _Compiler:
    def __init__(self) -> None:
        self.nodes = 0

    def _count(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(where, f"more than {MAX_NODES} predicates and operators")

    def filter(self, obj: Any, where: str, nesting: int) -> Predicate:
        if not isinstance(obj, dict):
            raise FilterError(where, "a filter must be an object")
        if not obj:
            # Matches everything, but each is still a predicate to call for every event:
            # `{"$and": [{}, {}, ...]}` would pass the bound uncounted (up to the 4 KiB cap).
            self._count(where)
        parts = [self._entry(key, value, where, nesting) for key, value in obj.items()]
        return _all(parts)

    def _entry(self, key: str, value: Any, where: str, nesting: int) -> Predicate:
        if key in _LOGIC:
            return self._logic(key, value, f"{where}.{key}", nesting + 1)
        if key.startswith("$"):
            raise FilterError(where, f"unknown operator {key} (a field's operators go "
                              f"inside its object: {{\"data.x\": {{\"$gt\": 1}}}})")
        path = f"{where}.{key}"
        get = _getter(key, path)
        if isinstance(value, dict):
            if not value:
                raise FilterError(path, "an empty object; use $eq to compare with {}")
            literal = [k for k in value if not k.startswith("$")]
            if literal:
                raise FilterError(path, f"{literal[0]} is not an operator; compare an "
                                  f"object with $eq, or write the field's dotted path")
            return _all([self._operator(op, operand, get, path)
                         for op, operand in value.items()])
        self._count(path)
        return _at(get, _equals(value))

    def _logic(self, op: str, value: Any, where: str, nesting: int) -> Predicate:
        if nesting > MAX_NESTING:
            raise FilterError(where, f"$and/$or/$not nested deeper than {MAX_NESTING}")
        self._count(where)
        if op == "$not":
            inner = self.filter(value, where, nesting)
            return lambda doc: not inner(doc)
        if not isinstance(value, list) or not value:
            raise FilterError(where, f"{op} needs a non-empty list of filters")
        parts = [self.filter(item, f"{where}[{i}]", nesting) for i, item in enumerate(value)]
        return _all(parts) if op == "$and" else _any(parts)

    def _operator(self, op: str, operand: Any, get: Callable[[Any], Any],
                  where: str) -> Predicate:
        self._count(where)
        if op == "$eq":
            return _at(get, _equals(operand))
        if op == "$ne":
            equal = _equals(operand)
            return lambda doc: not equal(get(doc))  # MISSING equals nothing: a match
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(where, f"{op} needs a list")
            if len(operand) > MAX_IN:
                raise FilterError(where, f"{op} has {len(operand)} values, over {MAX_IN}")
            member = _member(operand)
            if op == "$in":
                return _at(get, member)
            return lambda doc: not member(get(doc))
        if op in _COMPARE:
            if isinstance(operand, str) or _is_number(operand):
                return _at(get, _compare(op, operand))
            raise FilterError(where, f"{op} needs a number or string")
        if op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(where, "$exists needs true or false")
            if operand:
                return lambda doc: get(doc) is not MISSING
            return lambda doc: get(doc) is MISSING
        if op == "$prefix":
            if not isinstance(operand, str):
                raise FilterError(where, "$prefix needs a string")
            return _at(get, lambda v: isinstance(v, str) and v.startswith(operand))
        raise FilterError(where, f"unknown operator {op}")


def _getter(path: str, where: str) -> Callable[[Any], Any]:
    """The value at a dotted path of a document, or MISSING."""
    if len(path) > MAX_PATH_CHARS:
        raise FilterError(where, f"path longer than {MAX_PATH_CHARS} characters")
    segments = path.split(".")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise FilterError(where, f"path has more than {MAX_PATH_SEGMENTS} segments")
    if any(not s for s in segments):
        raise FilterError(where, "path has an empty segment")
    if any(s.startswith("$") for s in segments):
        raise FilterError(where, "a path segment must not start with $")
    steps = tuple((s, int(s) if s.isascii() and s.isdigit() else None) for s in segments)

    def get(doc: Any) -> Any:
        value = doc
        for key, index in steps:
            if isinstance(value, dict):
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            elif index is not None and isinstance(value, list) and index < len(value):
                value = value[index]
            else:
                return MISSING
        return value

    return get


def _at(get: Callable[[Any], Any], test: Predicate) -> Predicate:
    """`test` of the value at the path; False when the path is missing."""
    def predicate(doc: Any) -> bool:
        value = get(doc)
        return value is not MISSING and test(value)
    return predicate


def _all(parts: Sequence[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda doc: all(p(doc) for p in parts)


def _any(parts: Sequence[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda doc: any(p(doc) for p in parts)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: 1 == 1.0, true != 1, objects in any key order. Recurses only as
    deep as the shallower value, so a filter's literal bounds it whatever the document."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a):
        return _is_number(b) and a == b
    if isinstance(a, str) or a is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(json_equal(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(json_equal(v, b[k]) for k, v in a.items()))
    return False


def _equals(operand: Any) -> Predicate:
    """A test for JSON equality with `operand`, specialised for scalars (the common case)."""
    if isinstance(operand, bool):
        return lambda v: v is operand
    if operand is None:
        return lambda v: v is None
    if isinstance(operand, str):
        return lambda v: isinstance(v, str) and v == operand
    if _is_number(operand):
        return lambda v: _is_number(v) and v == operand
    return lambda v: json_equal(operand, v)


def _scalar_key(value: Any) -> tuple[str, Any] | None:
    """A hashable key equal exactly when the JSON scalars are equal; None for containers."""
    if isinstance(value, bool):
        return ("b", value)
    if value is None:
        return ("z", None)
    if isinstance(value, str):
        return ("s", value)
    if _is_number(value):
        return ("n", value)  # 1 and 1.0 hash and compare alike
    return None


def _member(values: list[Any]) -> Predicate:
    """A test for equality with any of `values`: a set lookup for scalars."""
    scalars = {key for v in values if (key := _scalar_key(v)) is not None}
    containers = [v for v in values if _scalar_key(v) is None]

    def member(value: Any) -> bool:
        key = _scalar_key(value)
        if key is not None:
            return key in scalars
        return any(json_equal(c, value) for c in containers)

    return member


def _compare(op: str, operand: Any) -> Predicate:
    same_kind: Predicate = _is_str if isinstance(operand, str) else _is_number
    if op == "$gt":
        return lambda v: same_kind(v) and v > operand
    if op == "$gte":
        return lambda v: same_kind(v) and v >= operand
    if op == "$lt":
        return lambda v: same_kind(v) and v < operand
    return lambda v: same_kind(v) and v <= operand
