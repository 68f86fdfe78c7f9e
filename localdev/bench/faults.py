"""(f1) kill -9 of one of two workers under steady load, then its restart; (f3) a rolling
restart (SIGTERM) of three workers under steady load. What a receiver sees: every pair
delivered, duplicates by delivery id against the stated bound (README, Delivery
guarantees), the throughput dip and the time back to the rate before.

The load: `rate` events/s, each to the `fanout` webhooks of its workspace, over one
workspace per partition of the task topic (chosen so that each lands on its own
partition), and webhooks spread evenly over the partitions of hookstream.deliveries; so a
stopped worker takes its share of both stages with it, not all or nothing.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from streams.core.timeutil import iso_from_ms
from streams.delivery.models import delivery_id_for
from streams.subscriptions.commands import Command, generate_secret

from .stack import Stack, get_json, wait_for
from .timeline import Receipts, dip, drained_after, mean_rate, rates, recovered_after

#: Seconds of load before the first fault: the rate the dip and recovery are measured
#: against is the mean of the last BEFORE_S of them.
WARMUP_S, BEFORE_S = 5.0, 15.0
#: Seconds of load after the kill (f1): the killed worker's partitions wait for its
#: session (15 s) to expire, then for a worker to load their guard and catch up.
AFTER_KILL_S = 45.0
#: Seconds of load between one restarted worker being ready and the next stop (f3), and
#: after the last.
SETTLE_S = 5.0
#: Seconds to wait, after the load stops, for the last pairs (a machine that could not
#: keep up with the load has a backlog to work off).
DRAIN_TIMEOUT_S = 600.0
SKIPPED = "hookstream_deliveries_skipped_duplicate_total"


def _partition(key: str, partitions: int) -> int:
    """Where a keyed record lands (the Java client's murmur2, as both producers place)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def spread_webhooks(stack: Stack, fanout: int) -> dict[str, list[str]]:
    """One workspace per partition of the domain topics, `fanout` webhooks in each, the
    `fanout` webhooks on each partition of hookstream.deliveries."""
    partitions = stack.settings.partitions
    spaces: dict[int, str] = {}
    n = 0
    while len(spaces) < partitions:
        spaces.setdefault(_partition(f"ws_{n}", partitions), f"ws_{n}")
        n += 1
    buckets: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while sum(map(len, buckets.values())) < partitions * fanout:
        wh = f"wh_{n}"
        bucket = buckets[_partition(wh, partitions)]
        if len(bucket) < fanout:
            bucket.append(wh)
        n += 1
    hooks = [wh for p in range(partitions) for wh in buckets[p]]
    by_space = {ws: hooks[i::partitions] for i, ws in enumerate(spaces.values())}
    for ws, ids in by_space.items():
        for wh in ids:
            stack.publisher.send_command(Command(
                op="create", webhook_id=wh, workspace_id=ws,
                webhook={"url": f"http://127.0.0.1:{stack.receiver_port}/f/{wh}",
                         "events": ["*"], "secret": generate_secret()}))
    stack.publisher.flush()
    admin = {"Authorization": f"Bearer {stack.env['HOOKSTREAM_ADMIN_KEY']}"}
    wait_for(lambda: all(stack.known(wh, admin) for wh in hooks), 120, "the webhooks")
    return by_space


class SteadyLoad:
    """Publishes `rate` events/s round-robin over the workspaces until stopped; remembers
    each pair's delivery id and when its event was published."""

    def __init__(self, stack: Stack, by_space: dict[str, list[str]], rate: float) -> None:
        self.stack, self.by_space, self.rate = stack, by_space, rate
        self.expected: dict[str, float] = {}
        self.started = self.stopped = 0.0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        spaces = list(self.by_space.items())
        n, self.started = 0, time.time()
        try:
            while not self._stop.is_set():
                ws, hooks = spaces[n % len(spaces)]
                now = time.time()
                event = self.stack.publisher.publish_event({
                    "event": "task.created", "workspace_id": ws,
                    "timestamp": iso_from_ms(int(now * 1000)),
                    "data": {"id": f"task_{n}", "name": "Benchmark task"}})
                for wh in hooks:
                    self.expected[delivery_id_for(event.id, wh)] = now
                n += 1
                if n % 50 == 0:
                    self.stack.publisher.flush()
                # Pacing of the load generator: `rate` a second.
                self._stop.wait(max(0.0, self.started + n / self.rate - time.time()))
            self.stack.publisher.flush()
        except BaseException as exc:  # reported by `stop`
            self.error = exc
        self.stopped = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise RuntimeError("the load generator failed") from self.error


@contextmanager
def steady(stack: Stack, by_space: dict[str, list[str]], rate: float) -> Iterator[SteadyLoad]:
    load = SteadyLoad(stack, by_space, rate)
    load.start()
    try:
        yield load
    finally:
        load.stop()


def _readiness(stack: Stack, worker: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    try:
        answer: dict[str, Any] = get_json(
            f"http://127.0.0.1:{stack.web_ports[worker.pid]}/readyz")
    except OSError:
        return None
    return answer


def _all_ready(stack: Stack) -> bool:
    return all((r := _readiness(stack, w)) is not None and r.get("ready")
               for w in stack.workers)


def _settle(stack: Stack) -> None:
    wait_for(lambda: _all_ready(stack), 120, "every worker ready with partitions")


def _collect(stack: Stack, load: SteadyLoad) -> tuple[Receipts, list[float], list[float]]:
    """Wait (up to DRAIN_TIMEOUT_S) for every pair; then the receipts, and the sorted
    publish and first-receipt times."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    # The cheap count first (it includes duplicates): the whole list only once it can be
    # complete, not every second while the workers are still catching up.
    while stack.count() < len(load.expected) and time.monotonic() < deadline:
        time.sleep(1.0)
    while True:
        rows = [(float(t), str(d)) for t, d in get_json(
            f"http://127.0.0.1:{stack.receiver_port}/deliveries")["deliveries"]]
        receipts = Receipts.of(rows, load.expected)
        if not receipts.lost(load.expected) or time.monotonic() > deadline:
            break
        time.sleep(5.0)
    return (receipts, sorted(load.expected.values()), sorted(receipts.first.values()))


def fault_report(scenario: str, stack: Stack, load: SteadyLoad, fanout: int,
                 fault_at: float, receipts: Receipts, received: list[float], before: float,
                 **figures: Any) -> dict[str, Any]:
    """What every fault scenario reports, its own `figures` in the middle: the load, the
    pairs lost and duplicated, the rate `before` the fault (at `fault_at`) and the dip
    after it, and the evidence."""
    ratio, low_at = dip(received, before, fault_at, load.stopped)
    return {"scenario": scenario, "offered_events_per_s": load.rate, "fanout": fanout,
            "webhooks": sum(map(len, load.by_space.values())),
            "pairs": len(load.expected), "lost": receipts.lost(load.expected),
            "duplicates": receipts.duplicates(),
            **figures,
            "rate_before_per_s": round(before, 1),
            "dip_ratio": round(ratio, 3), "dip_at_s": low_at,
            **_evidence(stack, load, receipts, received)}


def _evidence(stack: Stack, load: SteadyLoad, receipts: Receipts,
              received: list[float]) -> dict[str, Any]:
    """What to look at when a figure is odd: the 1-s rates from the start of the load,
    a few duplicated delivery ids, and the workers' logs (grep them for the ids; at
    --fault-log-level info every attempt and every skip is there)."""
    return {"rates_per_s_from_load_start": rates(received, load.started, load.stopped),
            "duplicated_ids_sample": sorted(receipts.duplicated())[:5],
            "worker_logs": str(stack.home / f"{stack.prefix}worker-*.log")}


def _skipped(stack: Stack) -> int:
    """Jobs the running workers skipped as duplicates (a killed one's count died with it)."""
    return int(stack.metric(SKIPPED))


def kill_restart(bootstrap: str, home: Path, rate: float, fanout: int,
                 log_level: str = "warning") -> dict[str, Any]:
    """(f1) Two workers; under steady load, kill -9 one, restart it at once."""
    stack = Stack(bootstrap, home, {"HOOKSTREAM_LOG_LEVEL": log_level})
    try:
        stack.start_worker()
        stack.start_worker()
        by_space = spread_webhooks(stack, fanout)
        _settle(stack)
        victim = stack.workers[-1]
        with steady(stack, by_space, rate) as load:
            time.sleep(WARMUP_S + BEFORE_S)
            held = (_readiness(stack, victim) or {}).get("delivery_partitions")
            victim.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.wait(30)
            stack.workers.remove(victim)
            restart_ready_s = stack.start_worker()
            time.sleep(max(0.0, killed_at + AFTER_KILL_S - time.time()))
        receipts, published, received = _collect(stack, load)
        before = mean_rate(received, killed_at - BEFORE_S, killed_at)
        duplicated = receipts.duplicated()
        first_copies = [receipts.first[d] - killed_at for d in duplicated]
        bound = stack.settings.delivery_concurrency
        return fault_report(
            "f1 kill -9 of 1 of 2 workers, restarted", stack, load, fanout, killed_at,
            receipts, received, before,
            load_s=round(load.stopped - load.started, 1),
            killed_after_s=round(killed_at - load.started, 1),
            killed_worker_delivery_partitions=held,
            bound=bound, within_bound=receipts.duplicates() <= bound,
            duplicates_first_copy_s_from_kill=(
                [round(min(first_copies), 2), round(max(first_copies), 2)]
                if first_copies else None),
            skipped_duplicates_by_running_workers=_skipped(stack),
            restart_ready_s=round(restart_ready_s, 1),
            recovered_s=recovered_after(received, before, killed_at, load.stopped),
            backlog_drained_s=drained_after(published, received, killed_at - BEFORE_S,
                                            killed_at, received[-1]))
    finally:
        stack.close()


def rolling_restart(bootstrap: str, home: Path, rate: float, fanout: int,
                    log_level: str = "warning") -> dict[str, Any]:
    """(f3) Three workers; under steady load, each in turn stopped with SIGTERM and
    restarted, the next only once the restarted one is ready and SETTLE_S have passed."""
    stack = Stack(bootstrap, home, {"HOOKSTREAM_LOG_LEVEL": log_level})
    try:
        for _ in range(3):
            stack.start_worker()
        by_space = spread_webhooks(stack, fanout)
        _settle(stack)
        stops: list[float] = []
        readies: list[float] = []
        codes: list[int] = []
        last_ready = 0.0
        with steady(stack, by_space, rate) as load:
            time.sleep(WARMUP_S + BEFORE_S)
            first_stop = time.time()
            for _ in range(3):
                worker = stack.workers[0]  # the oldest: each original worker once
                stopping = time.monotonic()
                worker.send_signal(signal.SIGTERM)
                codes.append(worker.wait(120))
                stops.append(round(time.monotonic() - stopping, 1))
                stack.workers.remove(worker)
                readies.append(round(stack.start_worker(), 1))
                _settle(stack)
                last_ready = time.time()
                time.sleep(SETTLE_S)
        receipts, _, received = _collect(stack, load)
        before = mean_rate(received, first_stop - BEFORE_S, first_stop)
        return fault_report(
            "f3 rolling restart (SIGTERM) of 3 workers", stack, load, fanout, first_stop,
            receipts, received, before,
            load_s=round(load.stopped - load.started, 1), expected_duplicates=0,
            skipped_duplicates_by_running_workers=_skipped(stack),
            exit_codes=codes, stop_s=stops, restart_ready_s=readies,
            total_s=round(last_ready - first_stop, 1),
            rate_during_per_s=round(mean_rate(received, first_stop, last_ready), 1),
            first_stop_after_s=round(first_stop - load.started, 1))
    finally:
        stack.close()
