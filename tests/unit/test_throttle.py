"""streams.api.throttle: past `limit` events in a window, a key waits (failed sign-ins of
an address, tests of a webhook)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.api.throttle import TESTS_LIMIT, WindowLimiter, webhook_tests_limiter


def test_the_twenty_first_failure_in_a_minute_makes_a_client_wait() -> None:
    limiter = WindowLimiter(limit=20, window_s=60.0)
    for n in range(20):
        assert limiter.retry_after("1.2.3.4", 100.0 + n) == 0
        limiter.record("1.2.3.4", 100.0 + n)
    assert limiter.retry_after("1.2.3.4", 120.0) == 0
    limiter.record("1.2.3.4", 120.0)
    # 21 failures in the window: wait until the first leaves it (100 + 60 = 160).
    assert limiter.retry_after("1.2.3.4", 121.0) == 39.0
    assert limiter.retry_after("5.6.7.8", 121.0) == 0  # others are not affected
    assert limiter.retry_after("1.2.3.4", 160.0) == 0


def test_memory_is_bounded_by_the_number_of_clients_kept() -> None:
    limiter = WindowLimiter(limit=2, window_s=60.0, max_keys=100)
    for n in range(10_000):
        limiter.record(f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(limiter) == 100


def test_forgets_a_client_whose_failures_expired() -> None:
    limiter = WindowLimiter(limit=2, window_s=10.0)
    limiter.record("a", 0.0)
    assert limiter.retry_after("a", 11.0) == 0
    assert len(limiter) == 0


@given(st.lists(st.floats(0, 300, allow_nan=False), max_size=80), st.floats(0, 400))
@settings(max_examples=300, derandomize=True)
def test_waits_exactly_while_more_than_the_limit_failed_in_the_window(
        failures: list[float], now: float) -> None:
    limiter = WindowLimiter(limit=5, window_s=60.0)
    for at in sorted(failures):
        if at <= now:
            limiter.record("c", at)
    recent = [at for at in failures if now - 60.0 < at <= now]
    wait = limiter.retry_after("c", now)
    assert (wait > 0) == (len(recent) > 5)
    if wait > 0:
        # Then, after waiting, it may try.
        assert limiter.retry_after("c", now + wait) == 0


def test_a_webhook_is_tested_at_most_sixty_times_a_minute() -> None:
    limiter = webhook_tests_limiter()
    for n in range(TESTS_LIMIT):
        assert limiter.retry_after("wh_1", float(n)) == 0, n
        limiter.record("wh_1", float(n))
    assert limiter.retry_after("wh_1", 59.5) > 0  # the 61st waits for the first to leave
    assert limiter.retry_after("wh_1", 60.0) == 0
