"""Failed authentications per client address: past 20 a minute, a client is told to wait. Pure.

API keys are long random strings, so guessing one is hopeless; the limit is there so that
trying costs the guesser time instead of costing us CPU and log volume, and so that an
operator sees it happen (hookstream_auth_failures_total). Only failures count: a client
that signs in correctly is never slowed, and one that sends no key at all is not guessing.

A sliding window of failure times per client address, at most `limit` + 1 of them kept.
Memory is bounded by `max_clients` (the least recently failing client is forgotten first),
so many addresses cannot make the table grow without end.
"""

from __future__ import annotations

from collections import OrderedDict, deque

#: Failures a client address may have in one window before it gets 429.
LIMIT = 20
WINDOW_S = 60.0
MAX_CLIENTS = 10_000


class FailureLimiter:
    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str, now: float) -> float:
        """Seconds this client must wait before it may try again (0: it may now)."""
        times = self._failures.get(client)
        if times is None:
            return 0.0
        self._forget_before(client, times, now - self.window_s)
        if len(times) <= self.limit:
            return 0.0
        # Allowed again once only `limit` failures are left inside the window.
        return times[-self.limit - 1] + self.window_s - now

    def failed(self, client: str, now: float) -> None:
        times = self._failures.get(client)
        if times is None:
            times = self._failures[client] = deque(maxlen=self.limit + 1)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        times.append(now)

    def _forget_before(self, client: str, times: deque[float], cutoff: float) -> None:
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[client]
