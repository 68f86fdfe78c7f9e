"""Each webhook's consecutive failed attempts, and the counts that matter. Pure.

    count:   1 ... ceil(L/2) ......... ceil(9L/10) ...... L
                   webhook.failing     webhook.failing    disable (webhook.disabled)

L is HOOKSTREAM_FAILURE_LIMIT (0: no counting at all). A success resets the count; so does a
new version of the subscription (re-enabled, its URL changed: a new endpoint, or the same
one an operator vouches for). Once the limit is reached the count is spent: nothing more is
reported for that version until it succeeds or changes, so the attempts still in flight
while the disable takes effect do not report it again. A threshold that falls on the limit
itself (a small L) is reported by the disable alone.

Kept in memory by the worker that owns the webhook's partitions: deliveries and the retry
topics are keyed by webhook id and read by one consumer group with the range assignor, so
partition p of each is one worker's, and so is every attempt of a webhook. A rebalance hands
partitions over, and their webhooks' counts start again from 0 on the new owner (`forget`):
the limit is reached later, never sooner.

Which attempts count is the stage's choice (streams.delivery.stage): there, failed
deliveries of operational events do not, so that one endpoint's trouble cannot count
towards another's `webhook.failing` (and from there back again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FAILING = "failing"
LIMIT = "limit"


def thresholds(limit: int) -> tuple[int, ...]:
    """The counts at which `webhook.failing` is reported: 50% and 90% of `limit`, rounded
    up, without repeats and below the limit itself."""
    if limit <= 0:
        return ()
    counts = {-(-limit // 2), -(-limit * 9 // 10)}
    return tuple(sorted(c for c in counts if c < limit))


@dataclass(frozen=True)
class Crossing:
    """A count reached: FAILING (a threshold) or LIMIT (disable the webhook)."""

    kind: str
    failures: int


@dataclass
class _Count:
    version: int
    partition: int
    failures: int = 0


class FailureCounter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._thresholds = frozenset(thresholds(limit))
        self._counts: dict[str, _Count] = {}

    def failed(self, webhook_id: str, version: int, partition: int) -> Crossing | None:
        """One more failed attempt of this version of the webhook (its `updated_at`), read
        from `partition`: the count it reached, if that one matters."""
        if self.limit <= 0:
            return None
        count = self._counts.get(webhook_id)
        if count is None or count.version != version:
            count = self._counts[webhook_id] = _Count(version, partition)
        count.partition = partition
        if count.failures >= self.limit:
            return None  # spent: the disable is on its way
        count.failures += 1
        if count.failures == self.limit:
            return Crossing(LIMIT, count.failures)
        if count.failures in self._thresholds:
            return Crossing(FAILING, count.failures)
        return None

    def succeeded(self, webhook_id: str) -> None:
        self._counts.pop(webhook_id, None)

    def failures(self, webhook_id: str) -> int:
        count = self._counts.get(webhook_id)
        return 0 if count is None else count.failures

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions handed over: their webhooks' counts are the next owner's, from 0."""
        gone = set(partitions)
        for webhook_id in [w for w, c in self._counts.items() if c.partition in gone]:
            del self._counts[webhook_id]

    def retain(self, partitions: Iterable[int]) -> None:
        """Only these partitions are ours now: forget the counts of any other (an attempt
        that finished after its partition was handed back counted on one)."""
        kept = set(partitions)
        self.forget({c.partition for c in self._counts.values()} - kept)

    def __len__(self) -> int:
        return len(self._counts)
