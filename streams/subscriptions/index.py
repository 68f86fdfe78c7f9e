"""The in-memory index fan-out reads: webhook id -> subscription, workspace -> webhooks.

Pure. Finding an event's subscribers costs the size of its workspace, never a scan.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..control.commands import Subscription
from ..matching import matches


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._by_workspace: dict[str, dict[str, Subscription]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, webhook_id: str) -> Subscription | None:
        return self._by_id.get(webhook_id)

    def put(self, sub: Subscription) -> None:
        old = self._by_id.get(sub.id)
        if old is not None and old.workspace_id != sub.workspace_id:
            self._remove_from_workspace(old)
        self._by_id[sub.id] = sub
        self._by_workspace.setdefault(sub.workspace_id, {})[sub.id] = sub

    def delete(self, webhook_id: str) -> None:
        old = self._by_id.pop(webhook_id, None)
        if old is not None:
            self._remove_from_workspace(old)

    def _remove_from_workspace(self, sub: Subscription) -> None:
        subs = self._by_workspace.get(sub.workspace_id)
        if subs is not None:
            subs.pop(sub.id, None)
            if not subs:
                del self._by_workspace[sub.workspace_id]

    def in_workspace(self, workspace_id: str) -> Iterator[Subscription]:
        return iter(self._by_workspace.get(workspace_id, {}).values())

    def subscribers(self, workspace_id: str, event_type: str,
                    include_inactive: bool = False) -> list[Subscription]:
        """Subscriptions of the workspace that want this event type (active ones only,
        unless `include_inactive`)."""
        return [s for s in self.in_workspace(workspace_id)
                if (s.active or include_inactive) and matches(s.events, event_type)]

    def all(self) -> Iterator[Subscription]:
        return iter(self._by_id.values())
