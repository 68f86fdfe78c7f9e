"""streams.delivery.slots.Slots: waits that time out or are cancelled never lose a slot."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.delivery.slots import Slots

SLOTS = 4


async def _crowd(slots: Slots, jobs: int, seed: int) -> int:
    """`jobs` tasks each wait for a slot with short timeouts (retrying), hold it briefly;
    a tenth are cancelled while waiting. Returns how many finished their work."""
    rng = random.Random(seed)
    finished = 0

    async def job() -> None:
        nonlocal finished
        while not await slots.acquire(rng.choice((0.001, 0.002, 0.005))):
            pass
        try:
            await asyncio.sleep(rng.random() * 0.001)
            finished += 1
        finally:
            slots.release()

    tasks = [asyncio.create_task(job()) for _ in range(jobs)]
    await asyncio.sleep(0.01)
    for task in rng.sample(tasks, jobs // 10):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return finished


@pytest.mark.parametrize("seed", range(3))
def test_no_slot_is_lost_to_timeouts_or_cancellation(seed: int) -> None:
    slots = Slots(SLOTS)
    finished = asyncio.run(asyncio.wait_for(_crowd(slots, 1000, seed), timeout=60))
    assert finished >= 900 - SLOTS  # every job not cancelled finished
    assert slots.free == SLOTS
    assert not slots.busy()


def test_a_timed_out_wait_says_so_and_leaves_the_queue() -> None:
    async def main() -> tuple[bool, bool, int]:
        slots = Slots(1)
        assert await slots.acquire()
        timed_out = await slots.acquire(0.01)
        slots.release()
        return timed_out, slots.busy(), slots.free

    assert asyncio.run(main()) == (False, False, 1)


def test_slots_go_to_waiters_in_order() -> None:
    async def main() -> list[int]:
        slots = Slots(1)
        order: list[int] = []
        await slots.acquire()

        async def waiter(n: int) -> None:
            async with slots:
                order.append(n)

        tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("released_first", [False, True],
                         ids=["cancelled-then-released", "released-then-cancelled"])
def test_a_waiter_cancelled_around_a_release_loses_no_slot(released_first: bool) -> None:
    """Two tasks wait; the first is cancelled just before or just after a release hands it
    the slot, and resumes only after both. Cancelled first, its future is cancelled at
    once while its handler runs later: the release must skip it, and the handler must not
    trip over the queue. Released first, the slot moved to it: it must pass it on."""
    async def main() -> tuple[bool, bool, int]:
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)  # a yield: each runs to its wait
        assert slots.busy()
        if released_first:
            slots.release()
            first.cancel()
        else:
            first.cancel()
            slots.release()
        cancelled = (await asyncio.gather(first, return_exceptions=True))[0]
        assert isinstance(cancelled, asyncio.CancelledError)
        got = await second
        slots.release()
        return got, slots.busy(), slots.free

    assert asyncio.run(main()) == (True, False, 1)
