"""Which subscriptions want an event: exact types, `family.*` and `*`.

`*` is every domain event, not the operational ones (catalog.OPERATIONAL_EVENT_TYPES): a
webhook receives those only when it names them (`webhook.*`, `delivery.dead_lettered`),
so they are opt-in, and webhooks created with `*` before they existed do not start
receiving a new kind of event.
"""

from __future__ import annotations

from collections.abc import Iterable

from .catalog import family_of, is_operational


def matches(patterns: Iterable[str], event_type: str) -> bool:
    family_wildcard = f"{family_of(event_type)}.*"
    everything = not is_operational(event_type)
    return any(p in (event_type, family_wildcard) or (everything and p == "*")
               for p in patterns)
