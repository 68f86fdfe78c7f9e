"""/v1/event-types: the event catalog as receivers read it (streams.core.eventschema), and
the payload POST /v1/webhooks/{id}/test sends for a type.

The catalog is static: it is derived from schemas/*.avsc once per process (`published`,
warmed by streams.api.install so a broken schema stops the worker at start, not at the first
request), and each answer is encoded then, so a request costs a key check and a write.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from faust.web import Request, Response

from ..core import catalog
from ..core.apikeys import Principal
from ..core.eventschema import event_types
from ..core.payload import dumps
from .endpoint import Endpoint, caller

#: What POST /v1/webhooks/{id}/test sends in `data` when no event type is asked for.
TEST_MESSAGE = "A test event from hookstream"


@dataclass(frozen=True)
class Published:
    """The catalog in the API's shapes, each encoded once."""

    #: type -> {"type", "description", "schema", "example", "name", "family"}, by type.
    entries: dict[str, dict[str, Any]]
    #: GET /v1/event-types: {"data": [...], "next_cursor": null} (one page: the list envelope
    #: of the other lists, so a client's pager works here too).
    listing: bytes
    #: GET /v1/event-types/{type}: one entry.
    one: dict[str, bytes]


@functools.cache
def published() -> Published:
    """The catalog, built on first use and kept: the same object for the process's life."""
    entries = {
        # `name` and `family`: what this endpoint answered before it carried schemas, kept
        # for the clients that read them.
        t.type: {"type": t.type, "description": t.description, "schema": t.data_schema,
                 "example": t.example, "name": t.type, "family": catalog.family_of(t.type)}
        for t in sorted(event_types().values(), key=lambda t: t.type)}
    return Published(
        entries=entries,
        listing=_encoded({"data": list(entries.values()), "next_cursor": None}),
        one={name: _encoded(entry) for name, entry in entries.items()})


def _encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def payload_for_test(event_type: str | None, event_id: str) -> tuple[str, str]:
    """The event type and `data` (compact JSON) of a test delivery: the catalog's example of
    `event_type`, or webhook.test's message when it is None."""
    if event_type is None:
        return catalog.TEST_EVENT, dumps({"id": event_id, "message": TEST_MESSAGE})
    return event_type, dumps(published().entries[event_type]["example"])


def _not_found(endpoint: Endpoint, event_type: str) -> Response:
    return endpoint.json({"error": {"code": "not_found",
                                    "message": f"no event type {event_type}"}}, status=404)


class EventTypes(Endpoint):
    async def get(self, request: Request) -> Response:
        """Every event type with its description, JSON Schema of `data` and an example."""
        principal = caller(self, request)
        if not isinstance(principal, Principal):
            return principal
        return self.bytes(published().listing, content_type="application/json")


class EventType(Endpoint):
    async def get(self, request: Request, event_type: str) -> Response:
        """One event type; 404 for one the catalog does not have."""
        principal = caller(self, request)
        if not isinstance(principal, Principal):
            return principal
        encoded = published().one.get(event_type)
        if encoded is None:
            return _not_found(self, event_type)
        return self.bytes(encoded, content_type="application/json")
