"""streams.dlq.index: each workspace's dead letters, newest first, paged, bounded."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dlq.index import DeadLetterIndex, Letter, decode_cursor, encode_cursor


def _letter(n: int, workspace: str = "ws_a", webhook: str = "wh_1", reason: str = "r",
            dead_at: int | None = None, partition: int = 0) -> Letter:
    return Letter(dead_at=1000 + n if dead_at is None else dead_at, partition=partition,
                  offset=n, workspace_id=workspace, webhook_id=webhook,
                  delivery_id=f"dlv_{n}", event_type="task.created", event_id=f"evt_{n}",
                  reason=reason, error=None, attempts=4)


def _all_pages(index: DeadLetterIndex, limit: int, **scope: str) -> list[list[Letter]]:
    pages, before = [], None
    while True:
        page, before = index.page(before=before, limit=limit, **scope)  # type: ignore[arg-type]
        pages.append(page)
        if before is None:
            return pages


def test_a_workspace_pages_through_its_own_letters_newest_first() -> None:
    index = DeadLetterIndex(per_workspace=1000)
    mine = [_letter(n) for n in range(23)]
    for n, letter in enumerate(mine):
        index.add(letter)
        index.add(_letter(100 + n, workspace="ws_b", webhook="wh_2"))
    pages = _all_pages(index, 5, workspace_id="ws_a")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [d for p in pages for d in p] == sorted(mine, key=lambda d: d.position,
                                                   reverse=True)


def test_filters_by_webhook_and_reason() -> None:
    index = DeadLetterIndex(per_workspace=1000)
    for n in range(30):
        index.add(_letter(n, webhook=f"wh_{n % 3}", reason="a" if n % 2 else "b"))
    (page,) = _all_pages(index, 100, workspace_id="ws_a", webhook_id="wh_1", reason="a")
    assert [d.offset for d in page] == [n for n in reversed(range(30))
                                        if n % 3 == 1 and n % 2]
    # a webhook filter never shows another workspace's letters
    assert index.page(workspace_id="ws_b", webhook_id="wh_1")[0] == []


def test_the_admin_sees_every_workspace() -> None:
    index = DeadLetterIndex(per_workspace=1000)
    letters = [_letter(n, workspace=f"ws_{n % 4}") for n in range(17)]
    for letter in letters:
        index.add(letter)
    assert [d for p in _all_pages(index, 4) for d in p] == list(reversed(letters))


def test_only_the_newest_letters_of_a_workspace_stay_listed() -> None:
    index = DeadLetterIndex(per_workspace=5)
    for n in range(8):
        index.add(_letter(n))
    index.add(_letter(50, workspace="ws_b", webhook="wh_9"))
    assert [d.offset for d in index.page(workspace_id="ws_a", limit=100)[0]] == [7, 6, 5, 4, 3]
    assert [d.offset for d in index.of_webhook("wh_1")] == [3, 4, 5, 6, 7]
    assert len(index) == 6
    assert index.unlisted == {"ws_a": 3}
    # a flood in one workspace does not push out another's
    assert [d.offset for d in index.page(workspace_id="ws_b")[0]] == [50]


def test_a_letter_read_twice_is_listed_once() -> None:
    index = DeadLetterIndex(per_workspace=10)
    index.add(_letter(1))
    index.add(_letter(1))
    assert len(index) == 1 and len(index.of_webhook("wh_1")) == 1


def test_replay_marks() -> None:
    index = DeadLetterIndex(per_workspace=10)
    letter = _letter(3, partition=2)
    index.add(letter)
    assert not index.replayed(letter)
    index.mark_replayed(2, 3)
    assert index.replayed(letter)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3), st.integers(0, 10**6)),
                unique_by=lambda t: (t[1], t[2]), max_size=80),
       st.integers(1, 9), st.sampled_from(["ws_0", "ws_1", None]))
@settings(max_examples=150, derandomize=True, deadline=None)
def test_pages_cover_every_letter_once_in_order(positions: list[tuple[int, int, int]],
                                                limit: int, workspace: str | None) -> None:
    """Equal times on several partitions, arrival out of order: no letter lost or repeated."""
    index = DeadLetterIndex(per_workspace=10**6)
    letters = [Letter(t, p, o, f"ws_{o % 2}", f"wh_{o % 5}", f"dlv_{p}_{o}", "task.created",
                      "evt", "r", None, 1) for t, p, o in positions]
    for letter in random.Random(len(letters)).sample(letters, len(letters)):
        index.add(letter)
    scope = {} if workspace is None else {"workspace_id": workspace}
    seen = [d for p in _all_pages(index, limit, **scope) for d in p]
    wanted = [d for d in letters if workspace is None or d.workspace_id == workspace]
    assert seen == sorted(wanted, key=lambda d: d.position, reverse=True)


@pytest.mark.parametrize("bad", ["", "1.2", "1.2.3.4", "a.b.c", "-1.2.3", "1.2.3 ",
                                 "1" * 30 + ".1.1", "\uff11.2.3"])
def test_cursors_that_are_not_ours_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(bad)


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor((1796000000000, 5, 123456))) == (1796000000000, 5, 123456)
