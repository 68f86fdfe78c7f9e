"""(f2) kill -9 of one broker of a local 3-broker cluster under steady load, restarted a
minute later: the broker leading the most partitions of hookstream.deliveries. Topics get
3 replicas and min.insync.replicas=2 there (streams.kafka.topics.replication_for), so the
pipeline should keep delivering on the other two while it is down and lose nothing.

The cluster runs in its own HOOKSTREAM_HOME (`.hookstream/bench-cluster`, the jars linked
from the single broker's) on ports of its own (9592..), beside the single broker the other
scenarios use, and is stopped at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from streams.kafka.topics import DELIVERIES

from ..kafka import LocalKafka
from ..kafka.config import cluster_ports
from .faults import (
    BEFORE_S,
    WARMUP_S,
    _collect,
    _settle,
    fault_report,
    spread_webhooks,
    steady,
)
from .stack import Stack
from .timeline import mean_rate, recovered_after

#: The first node's port; the others are 100 and 200 above (controllers one above each).
PORT = 9592
#: Seconds of load after the broker is back.
AFTER_S = 20.0


def broker_kill(root: Path, rate: float, fanout: int, down_s: float = 60.0,
                log_level: str = "warning") -> dict[str, Any]:
    home = root / "bench-cluster"
    home.mkdir(parents=True, exist_ok=True)
    libs = home / "kafka-libs"
    if not libs.exists():
        libs.symlink_to((root / "kafka-libs").resolve())
    cluster = LocalKafka(home=home, brokers=3, ports=cluster_ports(PORT, 3))
    cluster.up(timeout=240)
    stack: Stack | None = None
    try:
        stack = Stack(cluster.bootstrap, home, {"HOOKSTREAM_LOG_LEVEL": log_level})
        stack.start_worker()
        stack.start_worker()
        by_space = spread_webhooks(stack, fanout)
        _settle(stack)
        deliveries = stack.settings.topic(DELIVERIES)
        with steady(stack, by_space, rate) as load:
            time.sleep(WARMUP_S + BEFORE_S)
            leaders = Counter(cluster.leader_of(deliveries, p)
                              for p in range(stack.settings.partitions))
            victim, led = leaders.most_common(1)[0]
            cluster.kill_node(victim)
            killed_at = time.time()
            time.sleep(down_s)
            cluster.start_node(victim, timeout=180)
            back_at = time.time()
            time.sleep(AFTER_S)
        receipts, _, received = _collect(stack, load)
        before = mean_rate(received, killed_at - BEFORE_S, killed_at)
        return fault_report(
            "f2 kill -9 of 1 of 3 brokers, restarted after a minute", stack, load, fanout,
            killed_at, receipts, received, before,
            killed_broker=victim, it_led_deliveries_partitions=led,
            rate_while_down_per_s=round(mean_rate(received, killed_at, back_at), 1),
            rate_after_back_per_s=round(mean_rate(received, back_at, load.stopped), 1),
            down_s=round(back_at - killed_at, 1),
            recovered_s=recovered_after(received, before, killed_at, load.stopped))
    finally:
        if stack is not None:
            stack.close()
        cluster.down()
