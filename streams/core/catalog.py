"""The event types a webhook can subscribe to, by family (the documentation's list)."""

from __future__ import annotations

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "task": ("task.created", "task.updated", "task.completed", "task.deleted", "task.assigned"),
    "project": ("project.created", "project.updated", "project.archived", "project.deleted"),
    "comment": ("comment.created", "comment.updated", "comment.deleted"),
    "user": ("user.added", "user.removed", "user.role_changed"),
}

#: Sent by POST /v1/webhooks/{id}/test; never published on a domain topic.
TEST_EVENT = "webhook.test"

ALL_EVENT_TYPES: frozenset[str] = frozenset(t for ts in EVENT_TYPES.values() for t in ts)


def family_of(event_type: str) -> str:
    """`task.created` -> `task`."""
    return event_type.split(".", 1)[0]


def is_known(event_type: str) -> bool:
    return event_type in ALL_EVENT_TYPES


def is_valid_pattern(pattern: str) -> bool:
    """A subscription pattern: an exact known type, `family.*`, or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return pattern[:-2] in EVENT_TYPES
    return is_known(pattern)
