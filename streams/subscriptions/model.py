"""A webhook as every worker holds it: the subscription and its Avro form. Pure.

Every worker holds every subscription (streams.subscriptions.view says why), a million of
them in one process, so the object is kept small: slots instead of a __dict__ (about 100
bytes less each), and the values many subscriptions share (workspace ids, event lists,
the signature scheme, disabled reasons) are one object each rather than one per
subscription: `_shared` hands out the first equal value seen.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from ..core import filters
from ..core.headers import MASK, check_stored_headers
from ..core.schemas import SUBSCRIPTION, SchemaError, registry
from ..core.timeutil import to_ms
from ..settings import MAX_RATE_LIMIT

#: The shortest signing secret a webhook may have, whether set by the API or a control
#: command: 16 characters (96 bits as base64, Svix's `whsec_` secrets carry 192).
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    workspace_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    active: bool
    created_at: int
    updated_at: int
    disabled_reason: str | None = None
    description: str | None = None
    #: The secret before the last rotation, still signing until previous_secret_until.
    previous_secret: str | None = None
    previous_secret_until: int | None = None
    signature_scheme: str = "hookstream"
    last_command: str | None = None
    #: Custom request headers (name, sealed value), in the order given.
    headers: tuple[tuple[str, str], ...] = ()
    #: Payload filter, canonical JSON (streams.core.filters); None: every event of its types.
    filter: str | None = None
    #: Deliveries per second; None: the deployment's default (Settings.default_rate_limit).
    rate_limit: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id, "workspace_id": self.workspace_id, "url": self.url,
            "events": list(self.events), "secret": self.secret, "active": self.active,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "disabled_reason": self.disabled_reason, "description": self.description,
            "previous_secret": self.previous_secret,
            "previous_secret_until": self.previous_secret_until,
            "signature_scheme": self.signature_scheme, "last_command": self.last_command,
            "headers": dict(self.headers), "filter": self.filter, "rate_limit": self.rate_limit,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Subscription:
        until = r.get("previous_secret_until")
        reason = r.get("disabled_reason")
        return cls(
            id=r["id"], workspace_id=_shared_str(r["workspace_id"]), url=r["url"],
            events=_shared_events(tuple(r["events"])), secret=r["secret"], active=r["active"],
            created_at=to_ms(r["created_at"]), updated_at=to_ms(r["updated_at"]),
            disabled_reason=None if reason is None else _shared_str(reason),
            description=r.get("description"),
            previous_secret=r.get("previous_secret"),
            previous_secret_until=None if until is None else to_ms(until),
            signature_scheme=_shared_str(r.get("signature_scheme") or "hookstream"),
            last_command=r.get("last_command"),
            headers=tuple((r.get("headers") or {}).items()), filter=r.get("filter"),
            rate_limit=r.get("rate_limit"),
        )

    def public(self) -> dict[str, Any]:
        """What an API read may show: everything but secrets; custom headers by name, their
        values masked (they often hold credentials)."""
        record = self.to_record()
        for name in ("secret", "previous_secret", "previous_secret_until", "last_command"):
            del record[name]
        record["headers"] = {name: MASK for name, _ in self.headers}
        record["filter"] = None if self.filter is None else json.loads(self.filter)
        return record

    def encode(self) -> bytes:
        return registry().encode(SUBSCRIPTION, self.to_record())

    @classmethod
    def decode(cls, payload: bytes) -> Subscription:
        """Raises SchemaError and nothing else, whatever the bytes.

        Custom headers, the filter and the rate limit are checked here too, as the control
        agent checked them: a record some other writer put on the topic must not reach a delivery (a
        header value with CR/LF) or a fan-out (a filter that does not compile, which would
        fail every event of its workspace)."""
        record = registry().decode(SUBSCRIPTION, payload)
        try:
            sub = cls.from_record(record)
            if sub.headers:  # most have none; checking {} was a tenth of a restart's load
                check_stored_headers(dict(sub.headers))
            if sub.filter is not None:
                filters.stored(sub.filter)
            if sub.rate_limit is not None and not 1 <= sub.rate_limit <= MAX_RATE_LIMIT:
                raise ValueError(f"rate_limit {sub.rate_limit} is not 1 to {MAX_RATE_LIMIT}")
        except Exception as exc:  # a field of an unexpected type, a refused header or filter
            raise SchemaError(f"not a valid Subscription: {type(exc).__name__}: {exc}") from exc
        return sub


#: Event lists as decoded: most webhooks want one of a few ("*", a family's), so each
#: distinct list is kept once. Bounded: past this many distinct lists, new ones are not kept.
_EVENTS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_SHARED_EVENTS = 10_000


def _shared_events(events: tuple[str, ...]) -> tuple[str, ...]:
    found = _EVENTS.get(events)
    if found is not None:
        return found
    if len(_EVENTS) < _MAX_SHARED_EVENTS:
        _EVENTS[events] = events
    return events


def _shared_str(value: str) -> str:
    """One object for every equal string (sys.intern: freed when the last user goes)."""
    return sys.intern(value) if type(value) is str else value
