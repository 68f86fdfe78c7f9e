"""Attempt slots: a counting semaphore whose waits may time out or be cancelled safely.

Not asyncio.Semaphore: on CPython 3.11 a waiter cancelled (by a timeout or a rebalance's
drain) just as a permit is handed to it can lose that permit. Under `make bench` (a) a
webhook's 16 slots leaked one by one until every job waited forever and the worker
stalled at 40% of its deliveries (tests/unit/test_slots.py stalls the same way with
asyncio.Semaphore in its place). Here a waiter's future is never cancelled by the wait
itself: a timeout resolves it (False) and removes it from the queue in one step, before
anyone can hand it a slot, and a slot handed to a waiter cancelled meanwhile is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Slots:
    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[bool]] = deque()

    def busy(self) -> bool:
        """Whether an acquire now would wait."""
        return self.free <= 0 or bool(self._waiters)

    async def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot; False if none came within `timeout` seconds."""
        if not self.busy():
            self.free -= 1
            return True
        loop = asyncio.get_running_loop()
        # True: a slot moved to it (release); False: timed out (_expire). A timer rather
        # than asyncio.wait, which built a second future and a callback per wait (as
        # FairSlots does: streams.delivery.fairness).
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, self._expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():  # cancelled while waiting: it holds nothing
                # A release may have dropped it from the queue already (it skips the done).
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            elif waiter.result():
                self.release()  # handed a slot it will not use: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot moves to it: `free` is unchanged
                return
        self.free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():  # else it got a slot (or was cancelled) first
            waiter.set_result(False)
            self._waiters.remove(waiter)
