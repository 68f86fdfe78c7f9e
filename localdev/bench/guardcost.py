"""(g) What the duplicate guard costs: scenario (a)'s throughput with the guard on (the
default) and off (HOOKSTREAM_DUPLICATE_GUARD_SIZE=0), alternating A/B in the same run so
that the machine's drift shows as noise on both; and its memory, measured with tracemalloc
on a SeenOutcomes filled with realistic keys, next to the workers' peak RSS."""

from __future__ import annotations

import statistics
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from streams.delivery.guard import SeenOutcomes, instance_key
from streams.delivery.models import delivery_id_for
from streams.settings import Settings

from . import run

OFF = {"HOOKSTREAM_DUPLICATE_GUARD_SIZE": "0"}
#: The issue's target: the guard costs under this share of the throughput.
TARGET_COST = 0.05


def bytes_per_outcome(capacity: int, churn: int = 0) -> float:
    """Bytes a SeenOutcomes of `capacity` holds per outcome once filled with `capacity`
    realistic job instances (delivery ids of our form, ms timestamps), then `churn` more
    (the newest evict the oldest): its dict, its deque and the key ints they keep."""
    created = int(time.time() * 1000)
    tracemalloc.start()
    try:
        seen = SeenOutcomes(capacity)
        for n in range(capacity + churn):
            delivery_id = delivery_id_for(f"evt_{uuid.uuid4().hex}", f"wh_{n % 50}")
            seen.add(instance_key(delivery_id, created + n), 1)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held / len(seen)


def outcomes_held(events: int, fanout: int, partitions: int, capacity: int) -> int:
    """Outcomes a worker holding every partition keeps after (a): one per delivery (each
    succeeds at its first attempt) on the log partition of its webhook (wh_0 ...), at most
    `capacity` per partition."""
    per: dict[int, int] = {}
    for i in range(fanout):
        p = int(murmur2(f"wh_{i}".encode()) & 0x7FFFFFFF) % partitions
        per[p] = per.get(p, 0) + events
    return sum(min(capacity, n) for n in per.values())


def guard_cost(bootstrap: str, home: Path, events: int, fanout: int,
               rounds: int = 2) -> dict[str, Any]:
    """`rounds` of (a) with the guard on, then off: on, off, on, off..."""
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for _ in range(rounds):
        for label, env in (("on", {}), ("off", OFF)):
            runs[label].append(run.throughput(bootstrap, home, events, fanout, 1, env))

    def each(label: str, key: str) -> list[float]:
        return [float(r[key]) for r in runs[label]]

    def mean(label: str, key: str) -> float:
        return statistics.fmean(each(label, key))

    settings = Settings.from_env({})
    capacity = settings.duplicate_guard_size
    per_outcome = bytes_per_outcome(capacity)
    held = outcomes_held(events, fanout, settings.partitions, capacity)
    ratio = mean("on", "deliveries_per_s") / mean("off", "deliveries_per_s")
    normalised = mean("on", "ratio_to_limit") / mean("off", "ratio_to_limit")
    return {
        "scenario": "g duplicate guard cost (a, 1 worker: on vs off)",
        "events": events, "fanout": fanout, "order": ", ".join(["on", "off"] * rounds),
        "on_per_s": each("on", "deliveries_per_s"),
        "off_per_s": each("off", "deliveries_per_s"),
        "on_ratio_to_limit": each("on", "ratio_to_limit"),
        "off_ratio_to_limit": each("off", "ratio_to_limit"),
        "on_vs_off": round(ratio, 3), "cost": round(1 - ratio, 3),
        "cost_vs_bare_client": round(1 - normalised, 3), "target_cost": TARGET_COST,
        "on_cpu_s_per_1000": each("on", "cpu_s_per_1000"),
        "off_cpu_s_per_1000": each("off", "cpu_s_per_1000"),
        "on_peak_rss_mb": each("on", "peak_rss_mb_per_worker"),
        "off_peak_rss_mb": each("off", "peak_rss_mb_per_worker"),
        "guard_size": capacity,
        "bytes_per_outcome": round(per_outcome, 1),
        "bytes_per_outcome_after_churn": round(bytes_per_outcome(capacity, capacity), 1),
        "mb_per_full_partition": round(per_outcome * capacity / 2**20, 2),
        "outcomes_held_after_a": held,
        "guard_mb_after_a": round(per_outcome * held / 2**20, 2),
    }
