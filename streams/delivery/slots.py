"""Attempt slots: a counting semaphore whose waits may time out or be cancelled safely.

Not asyncio.Semaphore: on CPython 3.11 a waiter cancelled (by a timeout or a rebalance's
drain) just as a permit is handed to it can lose that permit. Under `make bench` (a) a
webhook's 16 slots leaked one by one until every job waited forever and the worker
stalled at 40% of its deliveries (tests/unit/test_slots.py stalls the same way with
asyncio.Semaphore in its place). Here a waiter's future is never cancelled by the wait
itself: after a timeout it is removed from the queue before anyone can hand it a slot, and
a slot handed to a cancelled waiter is passed on.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def busy(self) -> bool:
        """Whether an acquire now would wait."""
        return self.free <= 0 or bool(self._waiters)

    async def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot; False if none came within `timeout` seconds."""
        if not self.busy():
            self.free -= 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        if waiter.done():
            return True
        self._give_up(waiter)
        return False

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to it: `free` is unchanged
                return
        self.free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def _give_up(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            self.release()  # handed a slot it will not use: pass it on
        else:
            self._waiters.remove(waiter)
            waiter.cancel()
