"""streams.delivery.pressure: when a webhook's jobs are parked rather than queued."""

from __future__ import annotations

from streams.delivery.pressure import WebhookLoad

SLOTS, LIMIT = 16, 30.0


def _busy(load: WebhookLoad, webhook: str, running: int, queued: int, at: float) -> list[int]:
    tokens = []
    for _ in range(running):
        assert load.admit(webhook, at)
        tokens.append(load.started(webhook, at))
    for _ in range(queued):
        assert load.admit(webhook, at)
    return tokens


def test_an_unknown_webhook_is_admitted() -> None:
    assert WebhookLoad(SLOTS, LIMIT).admit("wh_1", 0.0)


def test_free_slots_mean_no_wait_whatever_the_history() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    token = _busy(load, "wh_1", 1, 0, 0.0)[0]
    # A slow attempt does not defer the next job while slots are free.
    assert load.expected_wait("wh_1", 100.0) == 0.0
    load.finished("wh_1", token, 100.0)
    assert load.admit("wh_1", 100.0)


def test_a_healthy_webhook_under_a_burst_is_never_deferred() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    tokens = _busy(load, "wh_1", SLOTS, 5000, 0.0)
    for token in tokens:
        load.finished("wh_1", token, 0.005)  # 5 ms answers
        load.started("wh_1", 0.005)
    # 4,985 queued x 5 ms / 16 slots: about 1.6 s.
    assert 1.0 < load.expected_wait("wh_1", 0.006) < 2.0
    assert load.admit("wh_1", 0.006)


def test_a_hanging_endpoint_is_deferred_before_any_attempt_ends() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    for n in range(3):
        _typical(load, f"wh_other{n}", 0.05, 0.0)
    _busy(load, "wh_slow", SLOTS, 100, 0.0)
    # Young attempts say little yet: 101 x 0.1 s / 16.
    assert load.admit("wh_slow", 0.1)
    # Five seconds on, nothing has answered: 102 jobs x 5 s / 16 slots > 30 s.
    assert load.expected_wait("wh_slow", 5.0) > LIMIT
    assert not load.admit("wh_slow", 5.0)
    # Another webhook is untouched.
    assert load.admit("wh_fast", 5.0)


def _typical(load: WebhookLoad, webhook: str, took: float, at: float) -> None:
    """A webhook with one finished attempt of `took` s and one still queued (so it stays)."""
    token = _busy(load, webhook, 1, 1, at)[0]
    load.finished(webhook, token, at + took)


def test_a_webhook_slower_than_the_others_is_deferred_behind_its_queue() -> None:
    load = WebhookLoad(1, LIMIT)
    for n in range(3):
        _typical(load, f"wh_fast{n}", 0.05, 0.0)
    token = _busy(load, "wh_1", 1, 1, 0.0)[0]
    load.finished("wh_1", token, 10.0)  # a 10 s answer
    load.started("wh_1", 10.0)  # the queued job takes the slot
    assert load.lagging("wh_1", 10.0)
    # Each job queued behind it waits 10 s more: the fourth would wait 40 s.
    assert [load.admit("wh_1", 10.0) for _ in range(4)] == [True, True, True, False]


def test_an_overloaded_worker_defers_nobody() -> None:
    """Every webhook slow alike is the worker's load, not an endpoint's fault."""
    load = WebhookLoad(1, LIMIT)
    for n in range(5):
        _typical(load, f"wh_{n}", 0.5, 0.0)
    assert not load.lagging("wh_0", 0.5)
    assert [load.admit("wh_0", 0.5) for _ in range(60)] == [True] * 60
    assert load.expected_wait("wh_0", 0.5) > LIMIT  # long waits, and still admitted:
    assert load.admit("wh_0", 0.5)


def test_a_slow_webhook_alone_still_lags() -> None:
    """When its queue has paused the partition, its neighbours are not active: it is its
    own median, and slow it is all the same."""
    load = WebhookLoad(1, LIMIT)
    _typical(load, "wh_slow", 10.0, 0.0)
    assert load.typical_s(10.0) == 10.0
    assert load.lagging("wh_slow", 10.0)


def test_idle_webhooks_are_forgotten() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    token = _busy(load, "wh_1", 1, 1, 0.0)[0]
    load.abandoned("wh_1")  # the queued job was cancelled
    assert len(load) == 1
    load.finished("wh_1", token, 0.01)
    assert len(load) == 0


def test_one_straggler_does_not_make_a_webhook_lag() -> None:
    load = WebhookLoad(2, LIMIT)
    for n in range(3):
        _typical(load, f"wh_other{n}", 0.05, 0.0)
    straggler = _busy(load, "wh_1", 1, 0, 0.0)[0]  # stuck for five seconds
    for step in range(100):  # the other slot answers in 50 ms, again and again
        at = step * 0.05
        token = _busy(load, "wh_1", 1, 0, at)[0]
        load.finished("wh_1", token, at + 0.05)
    _busy(load, "wh_1", 1, 0, 5.0)
    assert not load.lagging("wh_1", 5.01)
    load.finished("wh_1", straggler, 5.02)


def test_a_webhook_is_known_while_it_has_jobs() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    assert "wh_1" not in load
    token = _busy(load, "wh_1", 1, 0, 0.0)[0]
    assert "wh_1" in load
    load.finished("wh_1", token, 0.01)
    assert "wh_1" not in load
