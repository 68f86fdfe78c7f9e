"""The benchmark's moving parts: a receiver and worker processes on a fresh topic prefix of
the local broker, and the small waits and reads every scenario uses."""

from __future__ import annotations

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

from confluent_kafka import Producer

from streams.core.secretbox import generate_master_key
from streams.core.timeutil import iso_from_ms
from streams.core.urls import check_url
from streams.history.feeder import HistoryFeeder
from streams.kafka.admin import create_topics, delete_topics
from streams.kafka.producer import Publisher
from streams.kafka.topics import DELIVERY_LOG, SUBSCRIPTIONS
from streams.settings import Settings
from streams.subscriptions.commands import Command, generate_secret
from streams.subscriptions.model import Subscription

#: Jobs parked because their webhook was saturated: a throughput run should show none.
DEFERRED = "hookstream_deliveries_deferred_total"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def has_received(stack: Stack, count: int) -> bool:
    return stack.count() >= count


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
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
        self.receiver_port = free_port()
        self.web_port = free_port()
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
            [sys.executable, "-m", "localdev.bench.receiver", str(self.receiver_port)],
            env=self.env)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.web_ports: dict[int, int] = {}
        wait_for(lambda: self._answers(f"http://127.0.0.1:{self.receiver_port}/stats"), 30,
              "the receiver")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            get_json(url)
        except OSError:
            return False
        return True

    def start_worker(self) -> float:
        """Start one more worker (same consumer groups); return seconds until it was ready."""
        started = time.monotonic()
        port = self.web_port if not self.workers else free_port()
        log = (self.home / f"{self.prefix}worker-{port}.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env={**self.env, "HOOKSTREAM_WEB_PORT": str(port)}, stdout=log,
            stderr=subprocess.STDOUT)
        self.workers.append(worker)
        self.web_ports[worker.pid] = port

        def ready() -> bool:
            try:
                return bool(get_json(f"http://127.0.0.1:{port}/readyz").get("ready"))
            except OSError:
                return False

        # Generous: a worker loading a million subscriptions may miss its target (60 s); the
        # bench reports how long it took rather than stopping.
        wait_for(ready, 600, "the worker")
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
        wait_for(lambda: self.known(ids[-1], admin), 300, "the webhooks")
        return ids

    def subscriptions(self, count: int, workspaces: int, path: Callable[[int], str],
                      payload_filter: Callable[[int], str | None] = lambda _i: None) -> None:
        """`count` webhooks (ids wh_0.., round-robin over `workspaces`) written straight to
        the compacted subscriptions topic, as the control agent writes them (sealed secrets,
        canonical URLs, keyed by webhook id with the Java partitioner faust uses; the
        canonical filter `payload_filter(i)` gives webhook i), in one bulk publish; returns
        once the worker's view holds them all.

        Not through control commands: the control agent applies about 2,000 a second here,
        so a million took over 8 minutes of the bench and measured the control agent rather
        than the view.
        """
        box = self.settings.secret_box()
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 50,
                             "batch.size": 1 << 20,
                             "partitioner": "murmur2_random"})
        topic = self.settings.topic(SUBSCRIPTIONS)
        now = int(time.time() * 1000)
        # Checked once: the paths the scenarios append ("/d/7") are already canonical.
        base = check_url(f"http://127.0.0.1:{self.receiver_port}/", allow_insecure=True)[:-1]
        for i in range(count):
            sub = Subscription(
                id=f"wh_{i}", workspace_id=f"ws_{i % workspaces}",
                url=base + path(i), events=("*",),
                secret=box.seal(generate_secret()), active=True, created_at=now,
                updated_at=now, filter=payload_filter(i))
            while True:
                try:
                    producer.produce(topic, key=sub.id.encode(), value=sub.encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("the subscriptions were not all acknowledged")
        wait_for(lambda: self.loaded() >= count, max(300, count / 1000), "the subscriptions")

    def loaded(self) -> int:
        """Active subscriptions in the workers' views, as /metrics reports them."""
        try:
            return int(self.metric('hookstream_subscriptions{state="active"}'))
        except OSError:
            return 0

    def known(self, webhook_id: str, headers: dict[str, str]) -> bool:
        try:
            get_json(f"http://127.0.0.1:{self.web_port}/internal/subscriptions/{webhook_id}",
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
        name = (f'hookstream_consumer_lag{{group="{p}{HistoryFeeder.group}",'
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

    def history_count(self, webhook_id: str, limit: int) -> int:
        """Attempts of the webhook its history serves (at most `limit`), via the API route."""
        admin = {"Authorization": f"Bearer {self.env['HOOKSTREAM_ADMIN_KEY']}"}
        return len(get_json(f"http://127.0.0.1:{self.web_port}/internal/webhooks/"
                            f"{webhook_id}/attempts?limit={limit}", admin)["data"])

    def count(self) -> int:
        return int(get_json(f"http://127.0.0.1:{self.receiver_port}/count")["received"])

    def received(self) -> list[tuple[float, float, str]]:
        rows = get_json(f"http://127.0.0.1:{self.receiver_port}/stats")["received"]
        return [(float(t), float(latency), str(path)) for t, latency, path in rows]

    def worker_usage(self) -> tuple[float, int]:
        """(CPU seconds of all workers so far, the largest worker's peak RSS in bytes)."""
        cpu, peak = 0.0, 0
        for worker in self.workers:
            cpu += process_cpu_s(worker.pid)
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
        delete_topics(self.settings)


