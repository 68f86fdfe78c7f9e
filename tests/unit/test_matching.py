"""streams.core.matching and streams.core.catalog: which patterns want which event types."""

from __future__ import annotations

import pytest

from streams.core import catalog
from streams.core.catalog import (
    ALL_EVENT_TYPES,
    EVENT_TYPES,
    TEST_EVENT,
    family_of,
    is_known,
    is_valid_pattern,
)
from streams.core.matching import matches

DOC_EVENT_TYPES = {
    "task.created", "task.updated", "task.completed", "task.deleted", "task.assigned",
    "project.created", "project.updated", "project.archived", "project.deleted",
    "comment.created", "comment.updated", "comment.deleted",
    "user.added", "user.removed", "user.role_changed",
}


OPERATIONAL_TYPES = {"webhook.disabled", "webhook.failing", "delivery.dead_lettered"}


def test_catalog_is_the_documented_list_and_the_operational_events() -> None:
    assert set(ALL_EVENT_TYPES) == DOC_EVENT_TYPES | OPERATIONAL_TYPES
    assert set(EVENT_TYPES) == {"task", "project", "comment", "user", "webhook", "delivery"}
    assert {t for t in ALL_EVENT_TYPES if catalog.is_operational(t)} == OPERATIONAL_TYPES
    for family, types in EVENT_TYPES.items():
        assert all(family_of(t) == family for t in types)


def test_test_event_is_not_a_domain_type() -> None:
    assert TEST_EVENT == "webhook.test"
    assert not is_known(TEST_EVENT)


@pytest.mark.parametrize(
    ("event_type", "family"),
    [("task.created", "task"), ("user.role_changed", "user"), ("nodot", "nodot"),
     ("a.b.c", "a")],
)
def test_family_of(event_type: str, family: str) -> None:
    assert family_of(event_type) == family


@pytest.mark.parametrize("event_type", sorted(DOC_EVENT_TYPES))
def test_every_type_matches_exact_family_and_star(event_type: str) -> None:
    assert matches([event_type], event_type)
    assert matches([f"{family_of(event_type)}.*"], event_type)
    assert matches(["*"], event_type)


@pytest.mark.parametrize(
    ("patterns", "event_type"),
    [
        (["task.*"], "project.created"),
        (["task.created"], "task.updated"),
        (["project.*", "comment.*"], "task.created"),
        (["task.created", "user.added"], "task.deleted"),
        ([], "task.created"),
        (["task"], "task.created"),
        (["task."], "task.created"),
        (["tas.*"], "task.created"),
        (["Task.created"], "task.created"),
        (["task.created "], "task.created"),
        (["*.created"], "task.created"),
        (["task.*"], "taskx.created"),
    ],
)
def test_non_matches(patterns: list[str], event_type: str) -> None:
    assert not matches(patterns, event_type)


def test_prefix_trick_type_is_unknown() -> None:
    assert not is_known("taskx.created")
    assert not is_valid_pattern("taskx.*")


def test_any_of_several_patterns() -> None:
    patterns = ("comment.deleted", "task.*")
    assert matches(patterns, "task.assigned")
    assert matches(patterns, "comment.deleted")
    assert not matches(patterns, "comment.created")


def test_matches_accepts_iterators() -> None:
    assert matches(iter(["user.*"]), "user.added")


@pytest.mark.parametrize(
    "pattern",
    ["*", "task.*", "project.*", "comment.*", "user.*", "webhook.*", "delivery.*",
     *sorted(DOC_EVENT_TYPES | OPERATIONAL_TYPES)],
)
def test_valid_patterns(pattern: str) -> None:
    assert is_valid_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    ["", "**", "*.*", ".*", "task", "task.", "task.*.*", "task.unknown", "webhook.test",
     "webhook.tested", "delivery.*.*", "Task.*", "TASK.CREATED", " task.created",
     "task.created ", "*.created", "taskx.created", "user.role-changed"],
)
def test_invalid_patterns(pattern: str) -> None:
    assert not is_valid_pattern(pattern)


def test_is_known() -> None:
    assert all(is_known(t) for t in DOC_EVENT_TYPES)
    assert not catalog.is_known("task.*")
    assert not catalog.is_known("*")


@pytest.mark.parametrize("event_type", sorted(OPERATIONAL_TYPES))
def test_operational_events_are_opt_in_star_is_the_domain_events(event_type: str) -> None:
    """`*` does not name them: a webhook created with `*` before they existed does not start
    receiving them; its family's wildcard or its exact type does."""
    assert not matches(["*"], event_type)
    assert matches(["*", f"{family_of(event_type)}.*"], event_type)
    assert matches([event_type], event_type)
    assert all(matches(["*"], t) for t in DOC_EVENT_TYPES)
