"""Which offset of a partition is safe to commit while jobs finish out of order. Pure.

Jobs of one partition run concurrently and finish in any order. The committable offset is
the lowest offset still in flight (everything below it is done), or one past the last
offset read when nothing is in flight. Committing it never skips an unfinished job, so a
crash replays from there: at-least-once.
"""

from __future__ import annotations

import heapq


class OffsetTracker:
    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._heap: list[int] = []
        self._next_to_read: int | None = None
        self.committed: int | None = None

    def __len__(self) -> int:
        return len(self._in_flight)

    def started(self, offset: int) -> None:
        self._in_flight.add(offset)
        heapq.heappush(self._heap, offset)
        if self._next_to_read is None or offset + 1 > self._next_to_read:
            self._next_to_read = offset + 1

    def done(self, offset: int) -> None:
        self._in_flight.discard(offset)
        # Lazy deletion: drop finished offsets only when they reach the top.
        while self._heap and self._heap[0] not in self._in_flight:
            heapq.heappop(self._heap)

    def committable(self) -> int | None:
        """The offset to commit now, or None if it would not move past the last commit."""
        if self._next_to_read is None:
            return None
        offset = self._heap[0] if self._heap else self._next_to_read
        if self.committed is not None and offset <= self.committed:
            return None
        return offset
