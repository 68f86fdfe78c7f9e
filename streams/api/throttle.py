"""Events per key in a sliding window: past `limit` in one, the key is told to wait. Pure.

Two uses (streams.api):
- Failed authentications per key address, 20 a minute. API keys are long random
  strings, so guessing one is hopeless; the limit is there so that trying costs the guesser
  time instead of costing us CPU and log volume, and so that an operator sees it happen
  (hookstream_auth_failures_total). Only failures count: a key that signs in correctly is
  never slowed, and one that sends no key at all is not guessing.
- Tests per webhook (`POST /v1/webhooks/{id}/test`), 60 a minute: each is a real request
  to the tenant's endpoint, sent at once, outside the webhook's rate limit.

A sliding window of event times per key, at most `limit` + 1 of them kept. Memory is
bounded by `max_keys` (the key least recently seen is forgotten first), so many
addresses or webhooks cannot make the table grow without end.
"""

from __future__ import annotations

from collections import OrderedDict, deque

#: Failures a key address may have in one window before it gets 429.
LIMIT = 20
#: Tests of one webhook in one window; the next gets 429 (`webhook_tests_limiter`).
TESTS_LIMIT = 60
WINDOW_S = 60.0
MAX_KEYS = 10_000


class WindowLimiter:
    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S,
                 max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds before the next event of this key is allowed (0: now)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        self._forget_before(key, times, now - self.window_s)
        if len(times) <= self.limit:
            return 0.0
        # Allowed again once only `limit` events are left inside the window.
        return times[-self.limit - 1] + self.window_s - now

    def record(self, key: str, now: float) -> None:
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque(maxlen=self.limit + 1)
            while len(self._times) > self.max_keys:
                self._times.popitem(last=False)
        else:
            self._times.move_to_end(key)
        times.append(now)

    def _forget_before(self, key: str, times: deque[float], cutoff: float) -> None:
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._times[key]


def webhook_tests_limiter() -> WindowLimiter:
    """At most TESTS_LIMIT tests of a webhook a minute: a WindowLimiter lets one more event
    through than its limit (the 21st failed sign-in is the one that makes a client wait)."""
    return WindowLimiter(TESTS_LIMIT - 1)
