"""Each webhook's rate limit: at most N deliveries a second, evenly spaced. Pure.

The generic cell rate algorithm without a burst allowance: a webhook's sends start at
least 1/N s apart, the first after a quiet spell at once. So any second, as the receiver's
clock cuts it, holds at most N starts (N + 1 where a start falls exactly on its edge),
where a token bucket of N would let 2N through across one edge (a full bucket, then its
refill). Excess jobs wait for their turn, never dropped; one whose turn is further off than
the worker is willing to hold it (`defer_after`) is not given a turn at all: the stage
parks it on the retry path unattempted, as it parks a job whose endpoint lags
(streams.delivery.pressure).

Where it holds: in the worker that reads the webhook's jobs. Jobs and retries are keyed by
webhook, and partition p of every delivery topic is assigned to one worker
(streams.pipeline.clients: the range assignor), so one worker at a time sends a webhook's
deliveries. After a rebalance the new owner starts with no memory of the old one's pace:
at most one send comes early per move.
"""

from __future__ import annotations

#: Webhooks remembered before the ones whose turn has passed are forgotten.
PRUNE_AT = 10_000
#: How much sooner than 1/rate after the last start a send may still start: a timer can
#: fire a hair early, and a send sent back then would wait a whole turn more.
_EARLY_S = 0.001


class RateLimiter:
    """Turns (`reserve`, taken before a job waits for its slots, so a job waiting for its
    turn holds none), spacing (`space`, as a send starts: turns that passed while their
    jobs waited for slots must not start together) and starts (`begin`: sends spaced on
    the clock must not start together because the loop woke them late)."""

    def __init__(self) -> None:
        #: When each webhook's next turn may start, on the caller's clock.
        self._next: dict[str, float] = {}
        #: When each webhook's next send may start.
        self._next_send: dict[str, float] = {}
        #: When each webhook's last send started.
        self._begun: dict[str, float] = {}

    def wait(self, webhook_id: str, rate: float, now: float) -> float:
        """Seconds until a send to this webhook may start (0: now). Reserves nothing."""
        return max(0.0, self._next.get(webhook_id, now) - now)

    def reserve(self, webhook_id: str, rate: float, now: float) -> float:
        """Take the webhook's next turn: seconds to wait for it (0: now)."""
        return _take(self._next, webhook_id, rate, now)

    def space(self, webhook_id: str, rate: float, now: float) -> float:
        """Seconds until a send may start, at least 1/rate after the one before (0 when its
        turn kept it so, the usual case); taken."""
        return _take(self._next_send, webhook_id, rate, now)

    def begin(self, webhook_id: str, rate: float, now: float) -> float:
        """As a send is about to start, once its spacing has been slept: 0 if it may start
        now, at least 1/rate after the send before it actually started (taken); else the
        seconds to wait before asking again. `space` spaces sends on the clock; a loop busy
        when they were due wakes several at once, and the receiver would see them so."""
        last = self._begun.get(webhook_id)
        if last is not None and now < last + 1.0 / rate - _EARLY_S:
            return last + 1.0 / rate - now
        if len(self._begun) >= PRUNE_AT and webhook_id not in self._begun:
            # A start over a second ago holds no send back (a rate is at least 1/s).
            kept = {w: t for w, t in self._begun.items() if t > now - 1.0}
            self._begun.clear()
            self._begun.update(kept)
        self._begun[webhook_id] = now
        return 0.0


def _take(starts: dict[str, float], webhook_id: str, rate: float, now: float) -> float:
    """One GCRA step on `starts` (when each webhook's next start may be): seconds until this
    one, and the next pushed 1/rate past it. Past PRUNE_AT webhooks, a new one first makes
    room by forgetting those whose next start has passed (they would start at once anyway)."""
    start = max(now, starts.get(webhook_id, now))
    if len(starts) >= PRUNE_AT and webhook_id not in starts:
        kept = {w: t for w, t in starts.items() if t > now}
        starts.clear()  # and refilled, rather than rebound: the caller holds this dict
        starts.update(kept)
    starts[webhook_id] = start + 1.0 / rate
    return start - now
