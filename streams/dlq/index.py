"""Each workspace's dead letters, newest first, without reading anyone else's. Pure.

`GET /v1/dead-letters` used to read the whole dead-letter topic, every workspace's letters,
on every request. Now every worker keeps a small summary of each letter (ids, reason,
error, time and where it sits on the topic: never the job's payload), filed under its
workspace and its webhook, in (dead_at, partition, offset) order. A page is a walk back
from the cursor in one of those lists, so its cost is the page, not the topic.

Memory is bounded by a setting, not by tenants: each workspace keeps its newest
`per_workspace` letters listed (about half a kilobyte each); older ones drop out of the
listing, are counted in `unlisted`, and stay on the topic, where `hookstream dlq list` and
`hookstream dlq replay` still find them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedKeyList

#: (dead_at ms, partition, offset): unique, and the same on every worker.
Position = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Letter:
    """What a listing shows of one dead letter, and where to find the rest of it."""

    dead_at: int
    partition: int
    offset: int
    workspace_id: str
    webhook_id: str
    delivery_id: str
    event_type: str
    event_id: str
    reason: str
    error: str | None
    attempts: int

    @property
    def position(self) -> Position:
        return (self.dead_at, self.partition, self.offset)


def _position(letter: Letter) -> Position:
    return letter.position


def encode_cursor(position: Position) -> str:
    return "{}.{}.{}".format(*position)


def decode_cursor(cursor: str) -> Position:
    """A cursor from `encode_cursor`, else ValueError."""
    parts = cursor.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts):
        raise ValueError("not a cursor")
    dead_at, partition, offset = (int(p) for p in parts)
    return dead_at, partition, offset


class DeadLetterIndex:
    def __init__(self, per_workspace: int) -> None:
        self.per_workspace = per_workspace
        self._all: SortedKeyList = SortedKeyList(key=_position)
        self._by_workspace: dict[str, SortedKeyList] = {}
        self._by_webhook: dict[str, SortedKeyList] = {}
        self._replayed: set[tuple[int, int]] = set()
        #: Letters no longer listed, per workspace (they stay on the topic).
        self.unlisted: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, letter: Letter) -> None:
        mine = self._by_workspace.setdefault(letter.workspace_id, SortedKeyList(key=_position))
        if letter in mine:
            return  # read twice (a view restarted): the same letter
        mine.add(letter)
        self._by_webhook.setdefault(letter.webhook_id, SortedKeyList(key=_position)).add(letter)
        self._all.add(letter)
        while len(mine) > self.per_workspace:
            self._drop(mine[0])

    def _drop(self, letter: Letter) -> None:
        self._by_workspace[letter.workspace_id].remove(letter)
        webhook = self._by_webhook[letter.webhook_id]
        webhook.remove(letter)
        if not webhook:
            del self._by_webhook[letter.webhook_id]
        self._all.remove(letter)
        self.unlisted[letter.workspace_id] = self.unlisted.get(letter.workspace_id, 0) + 1

    def mark_replayed(self, partition: int, offset: int) -> None:
        self._replayed.add((partition, offset))

    def replayed(self, letter: Letter) -> bool:
        return (letter.partition, letter.offset) in self._replayed

    def of_webhook(self, webhook_id: str) -> list[Letter]:
        """A webhook's listed letters, oldest first."""
        return list(self._by_webhook.get(webhook_id, ()))

    def page(self, *, workspace_id: str | None = None, webhook_id: str | None = None,
             reason: str | None = None, before: Position | None = None,
             limit: int = 50) -> tuple[list[Letter], Position | None]:
        """Newest first, strictly older than `before`; with the cursor of the next page.

        The narrowest list is walked: the webhook's, else the workspace's, else (the admin
        without a filter) every listed letter.
        """
        if webhook_id is not None:
            source = self._by_webhook.get(webhook_id)
        elif workspace_id is not None:
            source = self._by_workspace.get(workspace_id)
        else:
            source = self._all
        found: list[Letter] = []
        for letter in _newest_first(source, before):
            if workspace_id is not None and letter.workspace_id != workspace_id:
                continue
            if reason is not None and letter.reason != reason:
                continue
            if len(found) == limit:
                return found, found[-1].position
            found.append(letter)
        return found, None


def _newest_first(letters: SortedKeyList | None, before: Position | None) -> Iterator[Letter]:
    if not letters:
        return iter(())
    if before is None:
        newest: Iterator[Letter] = reversed(letters)
        return newest
    older: Iterator[Letter] = letters.irange_key(max_key=before, inclusive=(True, False),
                                                 reverse=True)
    return older
