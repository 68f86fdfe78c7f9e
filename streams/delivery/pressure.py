"""When a webhook's jobs stop queueing in memory and are parked on the retry topic. Pure.

Jobs of one partition are handled concurrently, and a partition with too many in flight is
paused. A webhook whose endpoint hangs would fill that budget with jobs queued behind its
few slots, and every other webhook keyed to the same partition would stop too (head-of-line
blocking). So each worker estimates how long a new job of a webhook would wait for a slot:

    wait = (queued + 1) x attempt time / slots

where the attempt time is the larger of the webhook's recent average and, when all its
slots are busy, the age of its youngest running attempt (a hanging endpoint shows itself
before its attempts end; one straggler among quick answers does not).
Past the limit, and only if the webhook is lagging (its attempts take over 5 s, or
several times the typical webhook's in this worker), the job is deferred: parked on the
first retry topic, unattempted, and tried again when due. Lagging is relative so that an
overloaded worker, where every attempt takes longer, does not park healthy webhooks' jobs:
that would add work and delay them a minute for nothing. A healthy webhook under a burst is never
deferred; a hanging one keeps a few dozen jobs in memory, not the partition's budget.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

#: Weight of the newest attempt in a webhook's running average.
SMOOTHING = 0.2
#: A webhook lags when its attempts take this many times the typical webhook's...
LAGGING_FACTOR = 5.0
#: ...or this many seconds: by then it is slow whoever else is active. Needed because the
#: typical webhook is the median of the *active* ones, and when a slow endpoint's queue has
#: paused its partition, its neighbours cannot become active: the slow one is the median.
SLOW_S = 5.0
#: Seconds between recomputations of the typical attempt time (a median over webhooks).
TYPICAL_EVERY_S = 1.0


@dataclass
class _Load:
    queued: int = 0
    running: dict[int, float] = field(default_factory=dict)  # token -> start time
    average_s: float = 0.0


class WebhookLoad:
    def __init__(self, slots: int, limit_s: float) -> None:
        self.slots = slots
        self.limit_s = limit_s
        self._loads: dict[str, _Load] = {}
        self._tokens = itertools.count()
        self._typical_s = 0.0
        self._typical_at = float("-inf")

    def _attempt_s(self, load: _Load, now: float) -> float:
        if len(load.running) < self.slots:
            return load.average_s
        # Every slot busy and none freed for this long: the endpoint is at least this slow.
        # (The youngest attempt, not the oldest: one straggler must not condemn a webhook.)
        return max(load.average_s, now - max(load.running.values()))

    def expected_wait(self, webhook_id: str, now: float) -> float:
        """Seconds a job admitted now would wait for one of the webhook's slots."""
        load = self._loads.get(webhook_id)
        if load is None or (len(load.running) < self.slots and not load.queued):
            return 0.0
        return (load.queued + 1) * self._attempt_s(load, now) / self.slots

    def typical_s(self, now: float) -> float:
        """The median attempt time over active webhooks (recomputed once a second)."""
        if now - self._typical_at >= TYPICAL_EVERY_S:
            averages = sorted(load.average_s for load in self._loads.values()
                              if load.average_s > 0)
            self._typical_s = averages[(len(averages) - 1) // 2] if averages else 0.0
            self._typical_at = now
        return self._typical_s

    def lagging(self, webhook_id: str, now: float) -> bool:
        """Its attempts take over SLOW_S, or several times the typical webhook's."""
        load = self._loads.get(webhook_id)
        return load is not None and (
            self._attempt_s(load, now) > min(SLOW_S, LAGGING_FACTOR * self.typical_s(now)))

    def admit(self, webhook_id: str, now: float) -> bool:
        """True: queue the job here (then `started` and `finished`). False: defer it."""
        if (self.expected_wait(webhook_id, now) > self.limit_s
                and self.lagging(webhook_id, now)):
            return False
        self._loads.setdefault(webhook_id, _Load()).queued += 1
        return True

    def started(self, webhook_id: str, now: float) -> int:
        load = self._loads[webhook_id]
        load.queued -= 1
        token = next(self._tokens)
        load.running[token] = now
        return token

    def finished(self, webhook_id: str, token: int, now: float) -> None:
        load = self._loads[webhook_id]
        took = now - load.running.pop(token)
        load.average_s = (took if load.average_s == 0.0
                          else load.average_s + SMOOTHING * (took - load.average_s))
        if not load.running and not load.queued:
            # Idle webhooks are forgotten: memory follows active webhooks, not all of them.
            del self._loads[webhook_id]

    def abandoned(self, webhook_id: str) -> None:
        """A queued job that never started (cancelled while waiting)."""
        load = self._loads[webhook_id]
        load.queued -= 1
        if not load.running and not load.queued:
            del self._loads[webhook_id]

    def __len__(self) -> int:
        return len(self._loads)

    def __contains__(self, webhook_id: str) -> bool:
        """Whether the webhook has a job queued or running here."""
        return webhook_id in self._loads
