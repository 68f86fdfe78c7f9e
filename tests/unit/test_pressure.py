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
    _busy(load, "wh_slow", SLOTS, 100, 0.0)
    # Young attempts say little yet: 101 x 0.1 s / 16.
    assert load.admit("wh_slow", 0.1)
    # Five seconds on, nothing has answered: 102 jobs x 5 s / 16 slots > 30 s.
    assert load.expected_wait("wh_slow", 5.0) > LIMIT
    assert not load.admit("wh_slow", 5.0)
    # Another webhook is untouched.
    assert load.admit("wh_fast", 5.0)


def test_the_average_of_finished_attempts_counts() -> None:
    load = WebhookLoad(1, LIMIT)
    token = _busy(load, "wh_1", 1, 1, 0.0)[0]
    load.finished("wh_1", token, 10.0)  # a 10 s answer
    load.started("wh_1", 10.0)  # the queued job takes the slot
    # Each job queued behind it waits 10 s more: the fourth would wait 40 s.
    assert [load.admit("wh_1", 10.0) for _ in range(4)] == [True, True, True, False]


def test_idle_webhooks_are_forgotten() -> None:
    load = WebhookLoad(SLOTS, LIMIT)
    token = _busy(load, "wh_1", 1, 1, 0.0)[0]
    load.abandoned("wh_1")  # the queued job was cancelled
    assert len(load) == 1
    load.finished("wh_1", token, 0.01)
    assert len(load) == 0
