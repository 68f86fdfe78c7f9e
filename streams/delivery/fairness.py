"""Fair slots: the worker's attempt slots shared out between tenants (workspaces).

One FIFO `Slots` lets a tenant with 2,000 webhooks, or a flood of its events, take every
slot while the others' jobs wait behind it. Here each tenant's waiters queue apart, and

    a tenant t may hold a slot only while        held(t) < per_tenant
    a freed slot goes to the waiting tenant       min (held(t), arrival of t's oldest waiter)
      with                                        over tenants with held(t) < per_tenant

- The cap (`per_workspace_concurrency`, half the worker by default) holds even when no one
  else waits: a newcomer then finds free slots at once instead of waiting for a flood's
  attempts to end (up to `delivery_timeout` each when its endpoints hang).
- Below the caps, slots are max-min fair (water-filling): a freed slot goes to the waiting
  tenant that holds the fewest, so a newcomer's first job takes the very next slot and a
  flood keeps only what the others leave. Held slots, not attempts per second, are what is
  equalised: a slot is a connection, and a tenant whose endpoints are slow holds each one
  longer, so counting its turns (round-robin) would still let it hold most of them.
  Ties go to the tenant waiting longest; within a tenant, first come first served.
- Work-conserving: a slot is never left free while a tenant below its cap waits. (So while
  slots are free, every tenant still waiting is at its cap: an acquire that finds a slot
  free, for a tenant below its cap, overtakes no one.)
- Nothing is preempted (an attempt is never interrupted): shares converge as attempts end,
  within one attempt time.

Cancellation and timeouts are safe, as in `Slots` (whose docstring says why this is not
asyncio.Semaphore). The wait never cancels a waiter's future: a timeout resolves it (False)
from a loop callback, so a timeout and a hand-over exclude each other, whichever comes
first; a slot handed to a waiter whose task is cancelled at that moment is passed on.
tests/unit/test_fairness.py drives random interleavings of acquires, releases,
cancellations and timeouts from several tenants, hand-overs racing cancellations and
timeouts included, against a plain reference model (FairSlotsMachine); and shows a flood
giving way (test_a_flooding_tenant_gives_the_next_slots_to_a_newcomer).

Cost, on the path of every attempt: an acquire that finds a slot, and a release nobody
waits for, are O(1) (a dict of held counts). A wait, and a release that hands a slot over,
are O(log tenants waiting): a heap of the tenants below their cap with waiters, keyed as
above. Nothing scans the waiters: superseded heap entries and waiters that left are
skipped when reached, and swept once they outnumber the live ones (amortised O(1)).
A tenant that holds nothing and waits for nothing is forgotten: memory follows active
tenants.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque

#: Sweep the heap, or a tenant's queue, once stale entries outnumber live ones by this many.
#: Any constant keeps sweeps amortised O(1); this one spares small queues the churn.
_SLACK = 64


class _Queue:
    """A tenant's waiters, while it has any."""

    __slots__ = ("entry", "futures", "name", "waiting")

    def __init__(self, name: str) -> None:
        self.name = name
        #: Acquires suspended here that have not got a slot nor left.
        self.waiting = 0
        #: (arrival, future), oldest first. Futures already done are waiters that left
        #: (cancelled, timed out) and are dropped when reached.
        self.futures: deque[tuple[int, asyncio.Future[bool]]] = deque()
        #: Its live entry in the ready heap; None while it may not have a slot.
        self.entry: _Entry | None = None


#: (held, arrival of its oldest waiter, a unique number so tuples never compare queues, queue)
_Entry = tuple[int, int, int, _Queue]


class FairSlots:
    def __init__(self, total: int, per_tenant: int) -> None:
        if total < 1 or per_tenant < 1:
            raise ValueError("FairSlots needs at least one slot in all and per tenant")
        self.total = total
        self.per_tenant = per_tenant
        self.free = total
        self._held: dict[str, int] = {}  # tenants holding slots
        self._queues: dict[str, _Queue] = {}  # tenants waiting
        self._ready: list[_Entry] = []  # heap: the waiting tenants below their cap
        self._counter = 0  # arrivals and heap entries, in order

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    def waiting(self, tenant: str) -> int:
        queue = self._queues.get(tenant)
        return queue.waiting if queue is not None else 0

    def capped(self, tenant: str) -> bool:
        """Whether the tenant holds all it may: its own load holds it back, not others'."""
        return self._held.get(tenant, 0) >= self.per_tenant

    def busy(self, tenant: str) -> bool:
        """Whether an acquire for the tenant now would wait."""
        return self.free <= 0 or self._held.get(tenant, 0) >= self.per_tenant

    def __len__(self) -> int:
        """Tenants holding or waiting for a slot: the only ones remembered."""
        return len(self._held.keys() | self._queues.keys())

    async def acquire(self, tenant: str, timeout: float | None = None) -> bool:
        """Take a slot for `tenant`; False if none came within `timeout` seconds."""
        held = self._held.get(tenant, 0)
        if self.free > 0 and held < self.per_tenant:
            self.free -= 1
            self._held[tenant] = held + 1
            return True
        loop = asyncio.get_running_loop()
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = _Queue(tenant)
        waiter: asyncio.Future[bool] = loop.create_future()
        queue.futures.append((self._counter, waiter))
        self._counter += 1
        queue.waiting += 1
        self._rekey(queue)
        timer = (None if timeout is None
                 else loop.call_later(timeout, self._expire, queue, waiter))
        try:
            return await waiter  # True: a slot moved to it; False: timed out
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._leave(queue)
            elif waiter.result():
                self.release(tenant)  # handed a slot it will not use: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self, tenant: str) -> None:
        held = self._held.get(tenant, 0)
        if held <= 0:
            raise RuntimeError(f"tenant {tenant!r} released a slot it does not hold")
        if held == 1:
            del self._held[tenant]
        else:
            self._held[tenant] = held - 1
        self.free += 1
        queue = self._queues.get(tenant)
        if queue is not None:
            self._rekey(queue)  # one fewer held: it may come first now, or be below its cap
        if self._ready:
            self._dispatch()

    def slot(self, tenant: str) -> _Slot:
        """`async with fair.slot(tenant):` holds one of the tenant's slots."""
        return _Slot(self, tenant)

    def _dispatch(self) -> None:
        """Hand free slots to waiting tenants below their cap, fewest held first."""
        ready = self._ready
        while self.free > 0 and ready:
            entry = heapq.heappop(ready)
            queue = entry[3]
            if queue.entry is not entry:
                continue  # superseded
            queue.entry = None
            futures = queue.futures
            while futures and futures[0][1].done():
                futures.popleft()  # cancelled, its task yet to run
            if not futures:
                continue
            if futures[0][0] != entry[1]:
                self._rekey(queue)  # its oldest waiter left: back in on its true key
                continue
            futures.popleft()[1].set_result(True)  # the slot moves to it
            self.free -= 1
            self._held[queue.name] = self._held.get(queue.name, 0) + 1
            queue.waiting -= 1
            if queue.waiting:
                self._rekey(queue)
            else:
                del self._queues[queue.name]

    def _rekey(self, queue: _Queue) -> None:
        """Put the tenant in the ready heap on its current key, or out if it may not have a
        slot (at its cap, or no waiter left)."""
        futures = queue.futures
        while futures and futures[0][1].done():
            futures.popleft()
        held = self._held.get(queue.name, 0)
        if not futures or held >= self.per_tenant:
            queue.entry = None
            return
        old = queue.entry
        if old is not None and old[0] == held and old[1] == futures[0][0]:
            return
        queue.entry = entry = (held, futures[0][0], self._counter, queue)
        self._counter += 1
        heapq.heappush(self._ready, entry)
        if len(self._ready) > 2 * len(self._queues) + _SLACK:
            # Mostly superseded entries: keep the live ones (one at most per tenant).
            self._ready[:] = [q.entry for q in self._queues.values() if q.entry is not None]
            heapq.heapify(self._ready)

    def _expire(self, queue: _Queue, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():  # else it got a slot (or was cancelled) first
            waiter.set_result(False)
            self._leave(queue)

    def _leave(self, queue: _Queue) -> None:
        """A waiter left without a slot."""
        queue.waiting -= 1
        if not queue.waiting:
            queue.entry = None
            del self._queues[queue.name]
            return
        if len(queue.futures) > 2 * queue.waiting + _SLACK:
            queue.futures = deque(w for w in queue.futures if not w[1].done())
        self._rekey(queue)


class _Slot:
    __slots__ = ("_fair", "_tenant")

    def __init__(self, fair: FairSlots, tenant: str) -> None:
        self._fair = fair
        self._tenant = tenant

    async def __aenter__(self) -> None:
        await self._fair.acquire(self._tenant)

    async def __aexit__(self, *exc: object) -> None:
        self._fair.release(self._tenant)
