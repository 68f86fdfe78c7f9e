"""The in-memory index fan-out reads: webhook id -> subscription, workspace -> webhooks.

Pure. Finding an event's subscribers costs the size of its workspace, never a scan; so do
a workspace's listing and its webhook count (bounded by settings), the admin's listing of
everyone is a walk from a cursor in the sorted ids, and the counts /metrics reports are
kept as subscriptions change, not counted per scrape.

The sorted ids are made on the first listing of everyone, in one sort, and kept up to
date from then on: a worker loading a million subscriptions does not pay a million
insertions into them (about 3 s of its load) before anyone asks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from sortedcontainers import SortedList

from ..core.matching import matches
from .model import Subscription


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._by_workspace: dict[str, dict[str, Subscription]] = {}
        #: Every id in order; None until the first listing of everyone needs it.
        self._ids: SortedList | None = None
        #: Subscriptions by state: active / disabled.
        self.active = 0
        self.disabled = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, webhook_id: str) -> Subscription | None:
        return self._by_id.get(webhook_id)

    def put(self, sub: Subscription) -> None:
        old = self._by_id.get(sub.id)
        if old is None:
            if self._ids is not None:
                self._ids.add(sub.id)
        else:
            self._count(old, -1)
            if old.workspace_id != sub.workspace_id:
                self._remove_from_workspace(old)
        self._by_id[sub.id] = sub
        self._by_workspace.setdefault(sub.workspace_id, {})[sub.id] = sub
        self._count(sub, +1)

    def delete(self, webhook_id: str) -> None:
        old = self._by_id.pop(webhook_id, None)
        if old is not None:
            if self._ids is not None:
                self._ids.remove(webhook_id)
            self._count(old, -1)
            self._remove_from_workspace(old)

    def _count(self, sub: Subscription, change: int) -> None:
        if sub.active:
            self.active += change
        else:
            self.disabled += change

    def _remove_from_workspace(self, sub: Subscription) -> None:
        subs = self._by_workspace.get(sub.workspace_id)
        if subs is not None:
            subs.pop(sub.id, None)
            if not subs:
                del self._by_workspace[sub.workspace_id]

    def in_workspace(self, workspace_id: str) -> Iterator[Subscription]:
        return iter(self._by_workspace.get(workspace_id, {}).values())

    def count_in_workspace(self, workspace_id: str) -> int:
        return len(self._by_workspace.get(workspace_id, ()))

    def page(self, *, workspace_id: str | None, after: str | None,
             limit: int) -> tuple[list[Subscription], bool]:
        """Up to `limit` subscriptions in id order after `after` (of one workspace, or of
        all), and whether more follow."""
        if workspace_id is not None:
            ids = sorted(i for i in self._by_workspace.get(workspace_id, ())
                         if after is None or i > after)
        else:
            if self._ids is None:
                self._ids = SortedList(self._by_id)
            ids = list(itertools.islice(
                self._ids.irange(minimum=after, inclusive=(False, False)), limit + 1))
        return [self._by_id[i] for i in ids[:limit]], len(ids) > limit

    def subscribers(self, workspace_id: str, event_type: str,
                    include_inactive: bool = False) -> list[Subscription]:
        """Subscriptions of the workspace that want this event type (active ones only,
        unless `include_inactive`)."""
        return [s for s in self.in_workspace(workspace_id)
                if (s.active or include_inactive) and matches(s.events, event_type)]

    def all(self) -> Iterator[Subscription]:
        return iter(self._by_id.values())
