"""streams.delivery.fairness.FairSlots: caps, max-min shares, and no slot lost to a wait."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streams.delivery.fairness import FairSlots

TENANTS = ("a", "b", "c", "d")


class _StillLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when a test moves it: timeouts fire on cue."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


@dataclass
class _Model:
    """FairSlots' rule written plainly: a list of waiters, scanned on every release."""

    total: int
    per_tenant: int
    free: int
    held: Counter[str] = field(default_factory=Counter)
    queue: list[tuple[int, str, float]] = field(default_factory=list)  # (job, tenant, deadline)
    granted: set[int] = field(default_factory=set)
    timed_out: set[int] = field(default_factory=set)
    cancelled: set[int] = field(default_factory=set)

    def acquire(self, job: int, tenant: str, deadline: float) -> None:
        if (self.free > 0 and self.held[tenant] < self.per_tenant
                and all(t != tenant for _, t, _ in self.queue)):
            self._grant(job, tenant)
        else:
            self.queue.append((job, tenant, deadline))

    def release(self, tenant: str) -> None:
        self.held[tenant] -= 1
        self.free += 1
        while self.free > 0:
            oldest: dict[str, int] = {}  # each eligible tenant's oldest waiter (queue index)
            for i, (_, t, _) in enumerate(self.queue):
                if t not in oldest and self.held[t] < self.per_tenant:
                    oldest[t] = i
            if not oldest:
                return
            i = min(oldest.values(), key=lambda i: (self.held[self.queue[i][1]], i))
            job, t, _ = self.queue.pop(i)
            self._grant(job, t)

    def cancel(self, job: int, tenant: str) -> None:
        self.cancelled.add(job)
        if job in self.granted:
            self.granted.discard(job)
            self.release(tenant)  # handed a slot as it was cancelled: passed on
        else:
            self.queue = [w for w in self.queue if w[0] != job]

    def expire(self, now: float) -> None:
        self.timed_out |= {job for job, _, deadline in self.queue if deadline <= now}
        self.queue = [w for w in self.queue if w[2] > now]

    def _grant(self, job: int, tenant: str) -> None:
        self.free -= 1
        self.held[tenant] += 1
        self.granted.add(job)


class FairSlotsMachine(RuleBasedStateMachine):
    """Random acquires (some with timeouts), releases, cancellations and clock moves from
    several tenants, some racing a hand-over, on a real event loop with a still clock;
    after every step FairSlots must agree with _Model on every slot and every waiter."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = _StillLoop()
        self.loop.set_exception_handler(lambda _, context: self.errors.append(context))
        self.errors: list[dict[str, Any]] = []  # exceptions in loop callbacks
        self.tasks: dict[int, tuple[asyncio.Task[bool], str]] = {}

    @initialize(total=st.integers(1, 6), per_tenant=st.integers(1, 7))
    def start(self, total: int, per_tenant: int) -> None:
        self.fair = FairSlots(total, per_tenant)
        self.model = _Model(total, per_tenant, total)

    # Rules -------------------------------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), count=st.integers(1, 4),
          timeout=st.none() | st.integers(0, 3))
    def acquire(self, tenant: str, count: int, timeout: int | None) -> None:
        for _ in range(count):
            job = len(self.tasks)
            self.tasks[job] = (self.loop.create_task(self.fair.acquire(tenant, timeout)),
                               tenant)
            self.model.acquire(job, tenant, float("inf") if timeout is None
                               else self.loop.now + timeout)
        self._settle()

    @precondition(lambda self: +self.model.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        tenant = self._holder(data)
        self.fair.release(tenant)
        self.model.release(tenant)
        self._settle()

    @precondition(lambda self: self.model.queue)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from([job for job, _, _ in self.model.queue]))
        self.tasks[job][0].cancel()
        self.model.cancel(job, self.tasks[job][1])
        self._settle()

    @precondition(lambda self: +self.model.held and self.model.queue)
    @rule(data=st.data())
    def release_and_cancel(self, data: st.DataObject) -> None:
        """A waiter is cancelled just as a slot may be handed to it."""
        tenant = self._holder(data)
        job = data.draw(st.sampled_from([job for job, _, _ in self.model.queue]))
        self.fair.release(tenant)
        self.tasks[job][0].cancel()
        self.model.release(tenant)
        self.model.cancel(job, self.tasks[job][1])
        self._settle()

    @precondition(lambda self: +self.model.held and self.model.queue)
    @rule(data=st.data())
    def cancel_and_release(self, data: st.DataObject) -> None:
        """A slot is handed over while a tenant's oldest waiter, cancelled, has yet to leave."""
        oldest = {tenant: job for job, tenant, _ in reversed(self.model.queue)}
        job = data.draw(st.sampled_from(sorted(oldest.values())))
        tenant = self._holder(data)
        self.tasks[job][0].cancel()
        self.fair.release(tenant)
        self.model.cancel(job, self.tasks[job][1])
        self.model.release(tenant)
        self._settle()

    @rule(seconds=st.integers(1, 3))
    def wait(self, seconds: int) -> None:
        self.loop.now += seconds
        self._settle()

    @precondition(lambda self: +self.model.held and self.model.queue)
    @rule(data=st.data(), seconds=st.integers(1, 3))
    def release_as_waits_time_out(self, data: st.DataObject, seconds: int) -> None:
        """Timeouts are due but have not fired when a slot is handed over."""
        tenant = self._holder(data)
        self.loop.now += seconds
        self.fair.release(tenant)
        self.model.release(tenant)
        self._settle()

    # Checks ------------------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        fair, model = self.fair, self.model
        assert fair.free == model.free
        assert {t: fair.held(t) for t in TENANTS} == {t: model.held[t] for t in TENANTS}
        queued = Counter(t for _, t, _ in model.queue)
        assert {t: fair.waiting(t) for t in TENANTS} == {t: queued[t] for t in TENANTS}
        for job, (task, _) in self.tasks.items():
            if job in model.cancelled:
                assert task.cancelled(), job
            elif job in model.granted:
                assert task.done() and task.result() is True, job
            elif job in model.timed_out:
                assert task.done() and task.result() is False, job
            else:
                assert not task.done(), job

    @invariant()
    def raises_nothing_in_callbacks(self) -> None:
        assert not self.errors

    @invariant()
    def holds_the_rules(self) -> None:
        fair = self.fair
        held = {t: fair.held(t) for t in TENANTS}
        assert sum(held.values()) + fair.free == fair.total
        assert max(held.values()) <= fair.per_tenant
        if fair.free > 0:  # work-conserving: only tenants at their cap still wait
            assert all(fair.capped(t) for t in TENANTS if fair.waiting(t))
        active = [t for t in TENANTS if held[t] or fair.waiting(t)]
        assert len(fair) == len(active)  # idle tenants are forgotten

    def teardown(self) -> None:
        try:
            if hasattr(self, "fair"):
                for task, _ in self.tasks.values():
                    task.cancel()
                self._settle()
                for tenant in TENANTS:
                    for _ in range(self.fair.held(tenant)):
                        self.fair.release(tenant)
                assert self.fair.free == self.fair.total  # nothing leaked
                assert len(self.fair) == 0
        finally:
            self.loop.close()

    # Helpers -----------------------------------------------------------------------------

    def _holder(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(+self.model.held)))

    def _settle(self) -> None:
        """Run the loop until nothing changes for a few rounds (the clock stands still)."""
        self.model.expire(self.loop.now)

        def state() -> object:
            return (self.fair.free, [(t.done(), t.cancelled()) for t, _ in self.tasks.values()],
                    [(self.fair.held(t), self.fair.waiting(t)) for t in TENANTS])

        async def settle() -> None:
            calm, last = 0, state()
            for _ in range(1000):
                await asyncio.sleep(0)
                now = state()
                calm, last = (calm + 1 if now == last else 0), now
                if calm == 3:
                    return
            raise AssertionError("the loop never settled")

        self.loop.run_until_complete(settle())


FairSlotsMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None)
test_fair_slots_agree_with_the_reference_model = FairSlotsMachine.TestCase


# Floods and shares -----------------------------------------------------------------------

def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main` on a fresh loop; an exception in any loop callback fails the test."""
    errors: list[dict[str, Any]] = []

    async def checked() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        await asyncio.wait_for(main(), timeout=30)

    asyncio.run(checked())
    assert not errors


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _queue(fair: FairSlots, tenant: str, count: int,
                 served: list[tuple[str, int]]) -> list[asyncio.Task[None]]:
    async def job(n: int) -> None:
        await fair.acquire(tenant)
        served.append((tenant, n))

    tasks = [asyncio.create_task(job(n)) for n in range(count)]
    await _settle()
    return tasks


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_flooding_tenant_gives_the_next_slots_to_a_newcomer() -> None:
    async def main() -> None:
        fair = FairSlots(20, 20)
        served: list[tuple[str, int]] = []
        for _ in range(20):
            assert await fair.acquire("a")
        flood = await _queue(fair, "a", 1000, served)
        late = await _queue(fair, "b", 10, served)
        assert served == [] and fair.waiting("a") == 1000 and fair.waiting("b") == 10

        fair.release("a")
        await _settle()
        assert served == [("b", 0)]  # the very next slot
        for _ in range(9):
            fair.release("a")
        await _settle()
        assert served == [("b", n) for n in range(10)]  # all before the flood, in order
        for _ in range(5):
            fair.release("a")
        await _settle()
        assert served[10:] == [("a", n) for n in range(5)]  # then the flood, in order
        assert (fair.held("a"), fair.held("b"), fair.free) == (10, 10, 0)
        await _cancel(flood + late)

    _run(main)


def test_a_newcomer_takes_slots_until_it_holds_its_share() -> None:
    async def main() -> None:
        fair = FairSlots(20, 20)
        served: list[tuple[str, int]] = []
        for _ in range(20):
            assert await fair.acquire("a")
        flood = await _queue(fair, "a", 1000, served)
        late = await _queue(fair, "b", 15, served)
        for _ in range(12):
            fair.release("a")
            await _settle()
        # b reached half the slots; from then on a's freed slots go back to a.
        assert served == [("b", n) for n in range(10)] + [("a", 0), ("a", 1)]
        assert (fair.held("a"), fair.held("b")) == (10, 10)
        fair.release("b")
        await _settle()
        assert served[-1] == ("b", 10)  # and b's to b
        await _cancel(flood + late)

    _run(main)


def test_ties_go_to_the_tenant_waiting_longest() -> None:
    async def main() -> None:
        fair = FairSlots(3, 3)
        served: list[tuple[str, int]] = []
        for tenant in "xyz":
            assert await fair.acquire(tenant)
        for tenant in "cab":  # each holds nothing; c queued first
            await _queue(fair, tenant, 1, served)
        for tenant in "xyz":
            fair.release(tenant)
        await _settle()
        assert [tenant for tenant, _ in served] == ["c", "a", "b"]

    _run(main)


def test_a_tie_goes_by_the_oldest_waiter_still_waiting() -> None:
    async def main() -> None:
        fair = FairSlots(1, 1)
        assert await fair.acquire("x")
        served: list[tuple[str, int]] = []
        b_first = await _queue(fair, "b", 1, served)
        await _queue(fair, "c", 1, served)
        await _queue(fair, "b", 1, served)
        b_first[0].cancel()  # b's oldest leaves: c has now waited longer than b
        fair.release("x")
        await _settle()
        assert served == [("c", 0)]

    _run(main)


def test_the_cap_holds_even_when_no_one_else_waits() -> None:
    async def main() -> None:
        fair = FairSlots(10, 4)
        for _ in range(4):  # a lone tenant uses up to its cap...
            assert await fair.acquire("a")
        assert fair.capped("a") and fair.busy("a") and fair.free == 6
        assert not await fair.acquire("a", timeout=0.01)  # ...and no more
        assert fair.free == 6 and fair.waiting("a") == 0
        for _ in range(4):  # the rest is there for the others at once
            assert await fair.acquire("b")
        assert fair.free == 2 and not fair.busy("c")
        served: list[tuple[str, int]] = []
        waiting = await _queue(fair, "a", 3, served)
        assert served == []
        fair.release("a")
        await _settle()
        assert served == [("a", 0)] and fair.free == 2  # its own slot, and only that one
        await _cancel(waiting)

    _run(main)


def test_a_cap_above_the_total_lets_a_lone_tenant_use_every_slot() -> None:
    async def main() -> None:
        fair = FairSlots(5, 100)
        for _ in range(5):
            assert await fair.acquire("a")
        assert fair.free == 0 and fair.busy("a") and fair.busy("b")

    _run(main)


def test_the_context_manager_holds_one_slot() -> None:
    async def main() -> None:
        fair = FairSlots(2, 1)
        async with fair.slot("a"):
            assert fair.held("a") == 1 and fair.free == 1
        assert fair.free == 2 and len(fair) == 0

    _run(main)


def test_releasing_a_slot_not_held_is_an_error() -> None:
    fair = FairSlots(2, 2)
    with pytest.raises(RuntimeError):
        fair.release("a")
    with pytest.raises(ValueError):
        FairSlots(0, 1)


# Cancellation and timeouts -----------------------------------------------------------------

def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    async def main() -> None:
        fair = FairSlots(1, 1)
        assert await fair.acquire("a")
        first = asyncio.create_task(fair.acquire("b"))
        second = asyncio.create_task(fair.acquire("c", timeout=60))
        await _settle()
        fair.release("a")  # to b: it holds fewest and waited longest
        first.cancel()  # before it runs again
        await asyncio.gather(first, return_exceptions=True)
        assert await second
        assert (fair.held("b"), fair.held("c"), fair.free) == (0, 1, 0)

    _run(main)


def test_a_wait_that_times_out_as_it_is_handed_a_slot_keeps_it() -> None:
    loop = _StillLoop()
    try:
        fair = FairSlots(1, 1)
        assert loop.run_until_complete(fair.acquire("a"))
        waiter = loop.create_task(fair.acquire("b", timeout=1))
        loop.run_until_complete(_settle())
        loop.now = 5.0  # its timeout is due...
        fair.release("a")  # ...when the slot reaches it
        loop.run_until_complete(_settle())
        assert waiter.result() is True and fair.held("b") == 1 and fair.free == 0
    finally:
        loop.close()


def test_a_timed_out_wait_says_so_and_leaves_the_queue() -> None:
    async def main() -> None:
        fair = FairSlots(1, 1)
        assert await fair.acquire("a")
        assert not await fair.acquire("b", timeout=0.01)
        assert fair.waiting("b") == 0 and len(fair) == 1
        fair.release("a")
        assert fair.free == 1 and len(fair) == 0

    _run(main)


async def _crowd(fair: FairSlots, jobs: int, seed: int) -> int:
    """As test_slots._crowd, from many tenants: waits with short timeouts (retried), slots
    held briefly, a tenth of the jobs cancelled. Returns how many finished their work."""
    rng = random.Random(seed)
    finished = 0
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))

    async def job(tenant: str) -> None:
        nonlocal finished
        while not await fair.acquire(tenant, rng.choice((None, 0.001, 0.002, 0.005))):
            pass
        try:
            await asyncio.sleep(rng.random() * 0.001)
            finished += 1
        finally:
            fair.release(tenant)

    tenants = [f"ws_{n}" for n in range(12)]
    tasks = [asyncio.create_task(job(rng.choice(tenants))) for _ in range(jobs)]
    await asyncio.sleep(0.01)
    for task in rng.sample(tasks, jobs // 10):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert not errors
    return finished


def _loops() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    loops: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    try:
        import uvloop  # the worker's loop
    except ImportError:
        return loops
    return [*loops, uvloop.new_event_loop]


@pytest.mark.parametrize("new_loop", _loops(), ids=lambda new: new.__module__.split(".")[0])
@pytest.mark.parametrize("seed", range(2))
def test_no_slot_is_lost_to_timeouts_or_cancellation(
        seed: int, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    fair = FairSlots(8, 3)
    with asyncio.Runner(loop_factory=new_loop) as runner:
        finished = runner.run(asyncio.wait_for(_crowd(fair, 1000, seed), timeout=60))
    assert finished >= 900 - fair.total  # every job not cancelled finished
    assert fair.free == fair.total
    assert len(fair) == 0


# Memory --------------------------------------------------------------------------------------

def test_memory_follows_active_tenants_and_live_waiters() -> None:
    async def main() -> None:
        fair = FairSlots(2, 2)
        for n in range(1000):  # tenants that come and go leave nothing behind
            async with fair.slot(f"ws_{n}"):
                pass
        assert len(fair) == 0
        assert await fair.acquire("a") and await fair.acquire("b")
        served: list[tuple[str, int]] = []
        head = await _queue(fair, "c", 1, served)
        for _ in range(5000):  # a's and b's waits time out; waiters behind c's oldest leave
            for tenant in "ab":
                assert not await fair.acquire(tenant, timeout=0)
            behind = asyncio.create_task(fair.acquire("c"))
            await asyncio.sleep(0)
            behind.cancel()
            await asyncio.gather(behind, return_exceptions=True)
        assert fair.waiting("c") == 1 and len(fair) == 3
        # Internals, on purpose: what left the queues and the heap is swept, not kept.
        assert len(fair._queues["c"].futures) <= 2 + 64
        assert len(fair._ready) <= 2 * len(fair) + 64
        await _cancel(head)

    _run(main)

