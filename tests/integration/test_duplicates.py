"""Effectively once: workers that stop, restart, join or die send a receiver a delivery id a
second time only if its attempt was in flight when a process died (README, Delivery
guarantees). Every (event, webhook) pair is checked at the receiver, duplicates counted
by delivery id, while events keep arriving (a publisher thread at a steady rate).
"""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from ..support.kafka import group_members
from ..support.pipeline import Deployment
from ..support.runs import check_all_delivered, deliveries_group, pairs, setup_webhooks
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

#: A small worker-wide cap, so that the bound a kill is checked against is tight.
CONCURRENCY = 30
DEPLOYMENT: DeploymentSpec = {"workers": 0, "env": {
    "HOOKSTREAM_DELIVERY_CONCURRENCY": str(CONCURRENCY), "HOOKSTREAM_RETRY_DELAYS": "1,1,1"}}
#: Events a second (each to 5 webhooks): steady, well under what the workers can do here.
RATE = 20


class SteadyLoad:
    """Publishes an event to every webhook RATE times a second until stopped; knows
    every pair it asked for."""

    def __init__(self, dep: Deployment, ws: str, hooks: list[str]) -> None:
        self.dep, self.ws, self.hooks = dep, ws, hooks
        self.expected: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n, started = 0, time.monotonic()
        while not self._stop.is_set():
            event = self.dep.publisher.publish_event({
                "id": f"evt_{self.ws}_{n}", "event": "task.updated",
                "workspace_id": self.ws, "timestamp": "2025-10-14T10:30:00Z",
                "data": {"id": f"task_{n}"}})
            self.dep.publisher.flush()
            self.expected |= {(event.id, wh) for wh in self.hooks}
            n += 1
            # Pacing of the load generator, not a wait for anything: RATE a second.
            self._stop.wait(max(0.0, started + n / RATE - time.monotonic()))


def _delivered_by(port: int) -> float:
    """Successful deliveries a worker counted (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('hookstream_deliveries_total{outcome="success"'))


def _duplicates_by_id(dep: Deployment, run: str) -> Counter[str]:
    sent = Counter(r.headers["x-webhook-delivery"] for r in list(dep.receiver.requests)
                   if f"wh_{run}_" in r.path)
    return Counter({d: n - 1 for d, n in sent.items() if n > 1})


@pytest.fixture()
def fresh(dep: Deployment) -> Iterator[Deployment]:
    """The module's deployment with no worker running when a test begins or ends."""
    yield dep
    for worker in dep.workers:
        worker.stop()
    dep.workers.clear()  # stopped: later tests' waits ask only the workers they start


def test_a_rolling_restart_under_load_loses_nothing_and_sends_nothing_twice(
        fresh: Deployment) -> None:
    dep, run = fresh, uuid.uuid4().hex[:6]
    workers = dep.start_workers([{}, {}, {}])
    ws, hooks = setup_webhooks(dep, run)
    with SteadyLoad(dep, ws, hooks) as load:
        for n, worker in enumerate(list(workers)):
            before = len(pairs(dep, run))
            wait_until(lambda: len(pairs(dep, run)) >= before + 100, timeout=60,  # noqa: B023
                       what="deliveries going on")
            worker.stop()  # SIGTERM: finish or hand back, commit, leave the group
            assert worker.process is not None and worker.process.returncode == 0, (
                worker.log_tail())
            workers[n] = dep.start_worker()
        after_last = len(pairs(dep, run))
        wait_until(lambda: len(pairs(dep, run)) >= after_last + 100, timeout=60,
                   what="deliveries after the last restart")
    duplicates = check_all_delivered(dep, run, load.expected, timeout=120)
    assert duplicates == 0, _duplicates_by_id(dep, run).most_common(5)
    print(f"\nrolling restart of 3 workers: {len(load.expected)} pairs, 0 duplicates")


def test_a_worker_added_mid_run_takes_its_share_and_sends_nothing_twice(
        fresh: Deployment) -> None:
    dep, run = fresh, uuid.uuid4().hex[:6]
    first = dep.start_worker()
    ws, hooks = setup_webhooks(dep, run)
    bootstrap, group = dep.settings.bootstrap_servers, deliveries_group(dep)
    with SteadyLoad(dep, ws, hooks) as load:
        wait_until(lambda: len(pairs(dep, run)) >= 150, timeout=60, what="deliveries")
        joined_at = time.time()
        second = dep.start_worker()
        members = wait_until(lambda: len(m := group_members(bootstrap, group)) == 2
                             and all(m.values()) and m, what="both workers holding partitions")
        at_join = len(pairs(dep, run))
        wait_until(lambda: len(pairs(dep, run)) >= at_join + 150, timeout=60,
                   what="deliveries after the join")
    duplicates = check_all_delivered(dep, run, load.expected, timeout=120)
    assert duplicates == 0, _duplicates_by_id(dep, run).most_common(5)
    assert all(members.values()), members
    # The newcomer delivered its share: attempts counted in its own metrics.
    attempts = _delivered_by(second.port)
    assert attempts > 0, second.log_tail()
    assert first.process is not None and first.process.poll() is None
    print(f"\na worker joined at {joined_at:.0f}: {len(load.expected)} pairs, 0 duplicates, "
          f"the newcomer delivered {attempts:.0f}")
