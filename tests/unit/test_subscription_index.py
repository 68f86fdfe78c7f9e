"""streams.subscriptions.index: lookups, listings and counts that never walk everyone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.model import Subscription


def _sub(n: int, workspace: str = "ws_a", active: bool = True) -> Subscription:
    return Subscription(id=f"wh_{n:05d}", workspace_id=workspace, url="https://example.com/",
                        events=("*",), secret="s", active=active, created_at=0, updated_at=0)


class _CountingDict(dict[str, Any]):
    """Counts item reads: a listing must read about a page, not the whole index."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        type(self).reads += 1
        return super().__getitem__(key)

    def values(self) -> Any:  # type: ignore[override]
        raise AssertionError("a listing walked every subscription")


def test_the_admins_listing_reads_a_page_not_the_index() -> None:
    index = SubscriptionIndex()
    for n in range(20_000):
        index.put(_sub(n, workspace=f"ws_{n % 100}"))
    index._by_id = _CountingDict(index._by_id)
    page, more = index.page(workspace_id=None, after="wh_10000", limit=25)
    assert [s.id for s in page] == [f"wh_{n:05d}" for n in range(10_001, 10_026)]
    assert more
    assert _CountingDict.reads <= 26


def test_pages_cover_a_workspace_once_in_id_order() -> None:
    index = SubscriptionIndex()
    for n in range(57):
        index.put(_sub(n, workspace="ws_a" if n % 3 else "ws_b"))
    seen, after = [], None
    while True:
        page, more = index.page(workspace_id="ws_a", after=after, limit=10)
        seen += [s.id for s in page]
        if not more:
            break
        after = page[-1].id
    assert seen == sorted(f"wh_{n:05d}" for n in range(57) if n % 3)


@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["put", "disable", "move",
                                                                "delete", "list"])),
                max_size=200))
@settings(max_examples=200, derandomize=True, deadline=None)
def test_counts_follow_every_change(ops: list[tuple[int, str]]) -> None:
    index = SubscriptionIndex()
    for n, op in ops:
        current = index.get(f"wh_{n:05d}")
        if op == "put":
            index.put(_sub(n))
        elif op == "disable" and current is not None:
            index.put(replace(current, active=not current.active))
        elif op == "move" and current is not None:
            index.put(replace(current, workspace_id=f"ws_{n % 4}"))
        elif op == "delete":
            index.delete(f"wh_{n:05d}")
        elif op == "list":
            # The sorted ids are made by the first listing, then kept up to date: both kinds
            # of listing are checked against what the index holds.
            page, _ = index.page(workspace_id=None, after=None, limit=10**6)
            assert [s.id for s in page] == sorted(s.id for s in index.all())
    subs = list(index.all())
    assert index.active == sum(s.active for s in subs)
    assert index.disabled == sum(not s.active for s in subs)
    for workspace in {s.workspace_id for s in subs} | {"ws_a", "ws_none"}:
        assert index.count_in_workspace(workspace) == sum(
            s.workspace_id == workspace for s in subs)
    assert [s.id for s in index.page(workspace_id=None, after=None, limit=10**6)[0]] == sorted(
        s.id for s in subs)
