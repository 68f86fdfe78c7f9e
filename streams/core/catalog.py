"""The event types a webhook can subscribe to, by family (the documentation's list, and the
operational events hookstream itself publishes about a workspace's webhooks)."""

from __future__ import annotations

#: Domain events: what producers publish about tasks, projects, comments and users.
DOMAIN_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "task": ("task.created", "task.updated", "task.completed", "task.deleted", "task.assigned"),
    "project": ("project.created", "project.updated", "project.archived", "project.deleted"),
    "comment": ("comment.created", "comment.updated", "comment.deleted"),
    "user": ("user.added", "user.removed", "user.role_changed"),
}

#: Operational events: what hookstream publishes about the workspace's own webhooks
#: (streams.core.operational), delivered through the same pipeline. Their data names the
#: webhook they are about (`data.webhook_id`), which never receives them (fan-out).
OPERATIONAL_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "webhook": ("webhook.disabled", "webhook.failing"),
    "delivery": ("delivery.dead_lettered",),
}
WEBHOOK_DISABLED = "webhook.disabled"
WEBHOOK_FAILING = "webhook.failing"
DELIVERY_DEAD_LETTERED = "delivery.dead_lettered"

EVENT_TYPES: dict[str, tuple[str, ...]] = {**DOMAIN_EVENT_TYPES, **OPERATIONAL_EVENT_TYPES}

#: Sent by POST /v1/webhooks/{id}/test; never published on a domain topic, and not a type
#: a webhook subscribes to (`webhook.*` does not name it: it is no catalog type).
TEST_EVENT = "webhook.test"

ALL_EVENT_TYPES: frozenset[str] = frozenset(t for ts in EVENT_TYPES.values() for t in ts)
OPERATIONAL_FAMILIES: frozenset[str] = frozenset(OPERATIONAL_EVENT_TYPES)


def family_of(event_type: str) -> str:
    """`task.created` -> `task`."""
    return event_type.split(".", 1)[0]


def is_known(event_type: str) -> bool:
    return event_type in ALL_EVENT_TYPES


def is_operational(event_type: str) -> bool:
    """An event hookstream publishes about a webhook (`webhook.*`, `delivery.*`)."""
    return family_of(event_type) in OPERATIONAL_FAMILIES


def is_valid_pattern(pattern: str) -> bool:
    """A subscription pattern: an exact known type, `family.*`, or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return pattern[:-2] in EVENT_TYPES
    return is_known(pattern)
