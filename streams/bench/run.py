"""The benchmark scenarios. Each starts its own worker on a fresh topic prefix."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..admin import admin_client, create_topics
from ..control.commands import Command, generate_secret
from ..payload import webhook_body
from ..producer import Publisher
from ..secretbox import generate_master_key
from ..settings import Settings
from ..signing import sign
from ..timeutil import iso_from_ms
from ..topics import DELIVERY_LOG

CONCURRENCY = 200
#: Jobs parked because their webhook was saturated: a throughput run should show none.
DEFERRED = "hookstream_deliveries_deferred_total"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def _has(stack: Stack, count: int) -> bool:
    return stack.count() >= count


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Stack:
    """A receiver and a worker on a fresh prefix of the local broker."""

    bootstrap: str
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:6]}."
        self.receiver_port = _free_port()
        self.web_port = _free_port()
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                    "HOOKSTREAM_TOPIC_PREFIX": self.prefix, "HOOKSTREAM_WEB_PORT":
                    str(self.web_port), "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1",
                    "HOOKSTREAM_HOME": str(self.home), "HOOKSTREAM_LOG_LEVEL": "warning",
                    "HOOKSTREAM_MASTER_KEY": generate_master_key("bench"),
                    "HOOKSTREAM_ADMIN_KEY": f"admin_{uuid.uuid4().hex}", **self.extra_env}
        self.settings = Settings.from_env(self.env)
        create_topics(self.settings)
        self.publisher = Publisher(self.settings)
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "streams.bench.receiver", str(self.receiver_port)],
            env=self.env)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.web_ports: dict[int, int] = {}
        _wait(lambda: self._answers(f"http://127.0.0.1:{self.receiver_port}/stats"), 30,
              "the receiver")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            _get(url)
        except OSError:
            return False
        return True

    def start_worker(self) -> float:
        """Start one more worker (same consumer groups); return seconds until it was ready."""
        started = time.monotonic()
        port = self.web_port if not self.workers else _free_port()
        log = (self.home / f"{self.prefix}worker-{port}.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env={**self.env, "HOOKSTREAM_WEB_PORT": str(port)}, stdout=log,
            stderr=subprocess.STDOUT)
        self.workers.append(worker)
        self.web_ports[worker.pid] = port

        def ready() -> bool:
            try:
                return bool(_get(f"http://127.0.0.1:{port}/readyz").get("ready"))
            except OSError:
                return False

        _wait(ready, 120, "the worker")
        return time.monotonic() - started

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(60)
        self.workers.clear()

    def webhooks(self, count: int, workspaces: int, path: Callable[[int], str]) -> list[str]:
        ids = [f"wh_{i}" for i in range(count)]
        for i, wh in enumerate(ids):
            self.publisher.send_command(Command(
                op="create", webhook_id=wh, workspace_id=f"ws_{i % workspaces}",
                webhook={"url": f"http://127.0.0.1:{self.receiver_port}{path(i)}",
                         "events": ["*"], "secret": generate_secret()}))
        self.publisher.flush()
        admin = {"Authorization": f"Bearer {self.env['HOOKSTREAM_ADMIN_KEY']}"}
        _wait(lambda: self._known(ids[-1], admin), 300, "the webhooks")
        return ids

    def _known(self, webhook_id: str, headers: dict[str, str]) -> bool:
        try:
            _get(f"http://127.0.0.1:{self.web_port}/internal/subscriptions/{webhook_id}",
                 headers)
        except OSError:
            return False
        return True

    def publish(self, workspaces: int, events: int, rate: float | None = None) -> float:
        """Publish events round-robin over workspaces (at `rate`/s if given); return start."""
        started = time.time()
        for n in range(events):
            if rate is not None:
                delay = started + n / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            self.publisher.publish_event({
                "event": "task.created", "workspace_id": f"ws_{n % workspaces}",
                "timestamp": iso_from_ms(int(time.time() * 1000)),
                "data": {"id": f"task_{n}", "name": "Benchmark task"}})
        self.publisher.flush()
        return started

    def metric(self, name: str) -> float:
        """A counter's value summed over the running workers (0 if not exported yet)."""
        total = 0.0
        for worker in self.workers:
            port = self.web_ports[worker.pid]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=30) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + " "):
                        total += float(line.split()[1])
        return total

    def history_lag(self) -> float | None:
        """Attempt records the history tables have not yet committed (None: not sampled)."""
        p = self.prefix
        name = (f'hookstream_consumer_lag{{group="{p}hookstream",'
                f'topic="{p}{DELIVERY_LOG}"}}')
        values = []
        for worker in self.workers:
            port = self.web_ports[worker.pid]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=30) as response:
                values += [float(line.rsplit(" ", 1)[1])
                           for line in response.read().decode().splitlines()
                           if line.startswith(name + " ")]
        return max(values) if values else None

    def check_history(self, webhook_id: str, expected: int) -> None:
        """A committed history that was not written (a crashing agent acks too) is a bug,
        not a result: the newest attempts must be there."""
        admin = {"Authorization": f"Bearer {self.env['HOOKSTREAM_ADMIN_KEY']}"}
        found = _get(f"http://127.0.0.1:{self.web_port}/internal/webhooks/{webhook_id}"
                     f"/attempts?limit={expected}", admin)["data"]
        if len(found) != expected:
            raise RuntimeError(f"history of {webhook_id}: {len(found)} attempts, not "
                               f"{expected}")

    def count(self) -> int:
        return int(_get(f"http://127.0.0.1:{self.receiver_port}/count")["received"])

    def received(self) -> list[tuple[float, float, str]]:
        rows = _get(f"http://127.0.0.1:{self.receiver_port}/stats")["received"]
        return [(float(t), float(latency), str(path)) for t, latency, path in rows]

    def worker_usage(self) -> tuple[float, int]:
        """(CPU seconds of all workers so far, the largest worker's peak RSS in bytes)."""
        cpu, peak = 0.0, 0
        for worker in self.workers:
            stat = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            status = Path(f"/proc/{worker.pid}/status").read_text()
            peak = max(peak, next(int(line.split()[1]) * 1024 for line in status.splitlines()
                                  if line.startswith("VmHWM:")))
        return cpu, peak

    def close(self) -> None:
        for process in (*self.workers, self.receiver):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        # Every run leaves ~15 topics; hundreds of them slow the one-node broker and would
        # make later runs measure it rather than the pipeline.
        admin = admin_client(self.settings)
        names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(self.prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result()


def machine_limit(port: int, total: int, runs: int = 3) -> float:
    """The median of `runs` bare-client runs: one run drifts by a third on a shared 2-core
    machine."""
    rates = sorted(asyncio.run(_bare_client(port, total)) for _ in range(runs))
    return rates[len(rates) // 2]


async def _bare_client(port: int, total: int, concurrency: int = CONCURRENCY) -> float:
    """The machine's limit: signed POSTs from a bare aiohttp loop. Returns requests/s."""
    secret = generate_secret()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                body = webhook_body(f"evt_{n}", "task.created",
                                    iso_from_ms(int(time.time() * 1000)), "wh_bare",
                                    '{"id":"task"}')
                async with session.post(f"http://127.0.0.1:{port}/bare", data=body, headers={
                        "Content-Type": "application/json",
                        "X-Webhook-Signature": sign(body, secret)}) as response:
                    await response.read()

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return total / (time.monotonic() - started)


def throughput(bootstrap: str, home: Path, events: int, fanout: int,
               workers: int = 1) -> dict[str, Any]:
    """(a) E events, fan-out F: sustained deliveries/s, first to last delivery, with
    `workers` worker processes in the same consumer groups."""
    # Lag sampled every second, to see when the history has caught up.
    stack = Stack(bootstrap, home, {"HOOKSTREAM_SAMPLE_INTERVAL": "1"})
    try:
        limit = machine_limit(stack.receiver_port, min(events * fanout, 10_000))
        _get_reset(stack)
        for _ in range(workers):
            stack.start_worker()
        stack.webhooks(fanout, 1, lambda i: f"/a/{i}")
        cpu0, _ = stack.worker_usage()
        stack.publish(1, events)
        expected = events * fanout
        _wait(lambda: stack.count() >= expected, 1800, f"{expected} deliveries")
        times = sorted(r[0] for r in stack.received())
        # The work is done when the history (the API's deliveries view) has caught up too:
        # CPU is counted to there.
        _wait(lambda: stack.history_lag() == 0, 600, "the delivery history")
        history_behind = time.time() - times[-1]
        stack.check_history("wh_0", min(events, 1000))
        cpu1, peak = stack.worker_usage()
        rate = (len(times) - 1) / (times[-1] - times[0])
        return {"scenario": f"a throughput, {workers} worker{'s' * (workers > 1)}",
                "workers": workers, "events": events, "fanout": fanout,
                "deliveries": len(times), "deliveries_per_s": round(rate, 1),
                "bare_client_per_s": round(limit, 1), "ratio_to_limit": round(rate / limit, 3),
                "target_ratio": 0.6,
                "cpu_s_per_1000": round((cpu1 - cpu0) / len(times) * 1000, 3),
                "peak_rss_mb_per_worker": round(peak / 2**20, 1),
                "deferred": int(stack.metric(DEFERRED)),
                "history_caught_up_s_after_last": round(history_behind, 1)}
    finally:
        stack.close()


def _get_reset(stack: Stack) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{stack.receiver_port}/reset",
                                     data=b"", method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def latency(bootstrap: str, home: Path, rate: float, seconds: float,
            fanout: int) -> dict[str, Any]:
    """(b) A fixed offered rate: publish-to-receipt latency percentiles."""
    stack = Stack(bootstrap, home)
    try:
        stack.start_worker()
        stack.webhooks(fanout, 1, lambda i: f"/b/{i}")
        events = int(rate * seconds)
        stack.publish(1, events, rate=rate)
        _wait(lambda: stack.count() >= events * fanout, 600, "the deliveries")
        lat = [r[1] * 1000 for r in stack.received()]
        return {"scenario": "b latency", "offered_events_per_s": rate, "seconds": seconds,
                "fanout": fanout, "p50_ms": round(_percentile(lat, 0.5), 1),
                "p95_ms": round(_percentile(lat, 0.95), 1),
                "p99_ms": round(_percentile(lat, 0.99), 1), "target_p99_ms": 100}
    finally:
        stack.close()




def slow_endpoint(bootstrap: str, home: Path, events: int, timeout_s: float, rate: float,
                  seconds: float) -> dict[str, Any]:
    """(c) 1 of 10 endpoints hangs until the timeout: the healthy ones' p99 at a fixed
    offered rate, then their deliveries/s under a burst, next to the same run without the
    hanging one."""
    out: dict[str, Any] = {"scenario": "c slow endpoint", "delivery_timeout_s": timeout_s,
                           "offered_events_per_s": rate, "seconds": seconds,
                           "burst_events": events}
    for hanging in (False, True):
        label = "with_hanging" if hanging else "without_hanging"
        stack = Stack(bootstrap, home, {"HOOKSTREAM_DELIVERY_TIMEOUT": str(timeout_s)})
        try:
            stack.start_worker()

            def path(i: int, hang: bool = hanging) -> str:
                return f"/slow/{i}" if hang and i == 0 else f"/c/{i}"

            stack.webhooks(10, 1, path)
            # The receiver records healthy requests only: /slow/ ones hang, then return.
            offered = int(rate * seconds)
            stack.publish(1, offered, rate=rate)
            _wait(functools.partial(_has, stack, offered * 9), 600, "healthy deliveries")
            latencies = [r[1] * 1000 for r in stack.received()]
            out[f"{label}_healthy_p99_ms"] = round(_percentile(latencies, 0.99), 1)
            before = stack.count()
            stack.publish(1, events)
            _wait(functools.partial(_has, stack, before + events * 9), 900,
                  "healthy deliveries")
            times = sorted(r[0] for r in stack.received()[before:])
            out[f"{label}_healthy_per_s"] = round((len(times) - 1) / (times[-1] - times[0]), 1)
            out[f"{label}_deferred"] = int(stack.metric(DEFERRED))
        finally:
            stack.close()
    out["rate_kept"] = round(out["with_hanging_healthy_per_s"]
                             / out["without_hanging_healthy_per_s"], 3)
    out["target_rate_kept"] = 0.9
    out["target_p99_ms"] = 250
    return out


def retry_timing(bootstrap: str, home: Path, deliveries: int, delay_s: float) -> dict[str, Any]:
    """(e) Retries of an always-failing endpoint: how late each fires after its due time."""
    from ..delivery.models import AttemptRecord
    from ..reader import read_topic

    stack = Stack(bootstrap, home, {"HOOKSTREAM_RETRY_DELAYS": f"{delay_s},{delay_s},"
                                                               f"{delay_s}"})
    try:
        stack.start_worker()
        # A path the receiver answers 404 on would be a success for it: use a closed port.
        closed = _free_port()
        stack.publisher.send_command(Command(
            op="create", webhook_id="wh_fail", workspace_id="ws_0",
            webhook={"url": f"http://127.0.0.1:{closed}/nothing", "events": ["*"],
                     "secret": generate_secret()}))
        stack.publisher.flush()
        admin = {"Authorization": f"Bearer {stack.env['HOOKSTREAM_ADMIN_KEY']}"}
        _wait(lambda: stack._known("wh_fail", admin), 60, "the webhook")
        stack.publish(1, deliveries)

        def attempts() -> list[AttemptRecord]:
            return [AttemptRecord.decode(v) for _, _, _, v in read_topic(stack.settings,
                                                                          DELIVERY_LOG) if v]

        _wait(lambda: sum(1 for a in attempts() if a.attempt == 4) >= deliveries,
              600 + 3 * delay_s, "every retry")
        by_delivery: dict[str, dict[int, AttemptRecord]] = {}
        for a in attempts():
            by_delivery.setdefault(a.delivery_id, {})[a.attempt] = a
        lateness = []
        for tries in by_delivery.values():
            for n in (2, 3, 4):
                due = tries[n - 1].next_attempt_at
                if n in tries and due is not None:
                    lateness.append((tries[n].attempted_at - due) / 1000)
        return {"scenario": "e retry timing", "retries": len(lateness),
                "earliest_s": round(min(lateness), 3), "p50_late_s": round(
                    _percentile(lateness, 0.5), 3), "p99_late_s": round(
                    _percentile(lateness, 0.99), 3), "latest_s": round(max(lateness), 3),
                "early": sum(1 for x in lateness if x < 0), "over_1s_late": sum(
                    1 for x in lateness if x > 1), "target": "none early, none > 1 s late"}
    finally:
        stack.close()


def many_subscriptions(bootstrap: str, home: Path, subscriptions: int, workspaces: int,
                       events: int) -> dict[str, Any]:
    """(d) Throughput, RSS and restart-to-ready time with many subscriptions, next to few."""
    out: dict[str, Any] = {"scenario": "d many subscriptions", "events": events}
    for label, count, spaces in (("small", 100, 10), ("large", subscriptions, workspaces)):
        stack = Stack(bootstrap, home)
        try:
            stack.start_worker()
            started = time.monotonic()
            # Ten webhooks a workspace in both runs; the events go to the first workspace.
            stack.webhooks(count, spaces, lambda i: f"/d/{i}")
            out[f"{label}_subscriptions"] = count
            out[f"{label}_load_s"] = round(time.monotonic() - started, 1)
            before = stack.count()
            stack.publish(1, events)
            fanout = math.ceil(count / spaces)
            _wait(functools.partial(_has, stack, before + events * fanout), 900,
                  "the deliveries")
            times = sorted(r[0] for r in stack.received())[before:]
            out[f"{label}_deliveries_per_s"] = round((len(times) - 1) / (times[-1] - times[0]),
                                                     1)
            out[f"{label}_peak_rss_mb"] = round(stack.worker_usage()[1] / 2**20, 1)
            out[f"{label}_deferred"] = int(stack.metric(DEFERRED))
            stack.stop_workers()
            out[f"{label}_restart_ready_s"] = round(stack.start_worker(), 1)
        finally:
            stack.close()
    out["throughput_kept"] = round(out["large_deliveries_per_s"] / out["small_deliveries_per_s"],
                                   3)
    out["targets"] = "kept >= 0.8, large RSS <= 400 MB, ready <= 15 s"
    return out
