"""Which subscriptions want an event: exact types, `family.*` and `*`."""

from __future__ import annotations

from collections.abc import Iterable

from .catalog import family_of


def matches(patterns: Iterable[str], event_type: str) -> bool:
    family_wildcard = f"{family_of(event_type)}.*"
    return any(p in (event_type, family_wildcard) or p == "*" for p in patterns)
