"""`python -m localdev.bench` (also `hookstream bench`, `make bench`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..kafka import LocalKafka
from . import brokerfault, clients, faults, guardcost, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default=DEFAULT,
                        help="comma-separated: t http clients, a throughput, b latency, "
                             "c slow endpoint, d many subscriptions, e retry timing, "
                             "f1 kill -9 of 1 of 2 workers under load, f2 kill -9 of 1 of 3 "
                             "brokers (a local cluster), f3 rolling restart "
                             "of 3 workers under load, g duplicate guard cost, h payload "
                             "filters' fan-out cost "
                             f"(default {DEFAULT})")
    parser.add_argument("--events", type=int, default=20_000, help="events for (a)")
    parser.add_argument("--fanout", type=int, default=5)
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker process counts to run (a) with")
    parser.add_argument("--rate", type=float, default=None,
                        help="events/s offered in (b) (default: half of the deliveries/s "
                             "(a) measured with one worker in this run, over --fanout; "
                             "200 if (a) did not run)")
    parser.add_argument("--fault-rate", type=float, default=100.0,
                        help="events/s offered (each to --fanout webhooks) in (f1) and (f3): "
                             "below what the workers sustain here, so that the rate before "
                             "a fault is a steady one")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of (b)")
    parser.add_argument("--subscriptions", type=int, default=1_000_000,
                        help="subscriptions in (d), over a tenth as many workspaces")
    parser.add_argument("--filter-subscriptions", type=int, default=100_000,
                        help="subscriptions in (h), over a tenth as many workspaces, every "
                             "second one with a payload filter in its second run")
    parser.add_argument("--timeout", type=float, default=10.0, help="delivery timeout in (c)")
    parser.add_argument("--slow-rate", type=float, default=100.0,
                        help="events/s offered to the ten endpoints of (c) for 10 s")
    parser.add_argument("--retries", type=int, default=100,
                        help="deliveries that fail in (e); each retries 3 times")
    parser.add_argument("--fault-log-level", default="warning",
                        help="workers' log level in (f1) and (f3): info logs every attempt "
                             "and skip, to trace duplicates by delivery id")
    parser.add_argument("--guard-events", type=int, default=None,
                        help="events for each run of (g) (default: --events)")
    parser.add_argument("--guard-rounds", type=int, default=2,
                        help="on/off pairs of runs in (g)")
    parser.add_argument("--warmup-events", type=int, default=WARMUP_EVENTS,
                        help="events of an unmeasured (a) run before the first scenario that "
                             "uses the broker, so that none measures a JVM still compiling "
                             f"(default {WARMUP_EVENTS}; 0: none)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wanted = args.scenarios.split(",")
    # (t) needs no broker and (f2) runs a cluster of its own: the single broker only if
    # another scenario is asked for.
    bootstrap, broker_pid = "", None
    if set(wanted) - {"t", "f2"}:
        status = LocalKafka.from_env().up()[0]
        bootstrap, broker_pid = status.bootstrap, status.pid
    home = Path(".hookstream/bench")
    home.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    for scenario in args.scenarios.split(","):
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario!r}")
    if bootstrap and args.warmup_events > 0:
        warmup = run.throughput(bootstrap, home, args.warmup_events, args.fanout,
                                broker_pid=broker_pid)
        results.append({**warmup, "scenario": "warm-up (a), not a measurement"})
        console.print(f"warm-up, not a measurement: {warmup['deliveries']} deliveries at "
                      f"{warmup['deliveries_per_s']}/s, the broker "
                      f"{warmup['broker_cpu_s_per_1000']} CPU-s per 1,000")
    for scenario in wanted:
        for result in _run(scenario, args, bootstrap, home, broker_pid):
            if result.get("workers") == 1 and args.rate is None:
                # (b)'s target is at half of (a)'s measured rate.
                args.rate = result["deliveries_per_s"] / 2 / args.fanout
            results.append(result)
            table = Table(title=result["scenario"], show_header=False)
            for key, value in result.items():
                if key != "scenario":
                    table.add_row(key, str(value))
            console.print(table)
            # Written as each scenario ends: a long run stopped halfway keeps what it measured.
            path.write_text(json.dumps(results, indent=2))
    console.print(f"written to {path}")


#: A fresh broker spends its first minutes compiling its hot paths (the JVM's JIT, in its
#: own threads): 20 CPU-s over the first 150,000 deliveries of (a), 3 over the next 100,000
#: (`jcmd <pid> PerfCounter.print`, java.ci.totalTime). Its CPU per 1,000 deliveries was
#: 0.12-0.22 CPU-s in a first run of (a), 0.02-0.04 once warm, and on a 2-core machine what
#: the broker takes the worker does not get. Production brokers are warm; so is the broker
#: every scenario here measures.
WARMUP_EVENTS = 30_000
SCENARIOS = ("t", "a", "b", "c", "d", "e", "f1", "f2", "f3", "g", "h")
#: (g) is left out: four more runs of (a), a quarter of an hour on the 2-core machine.
DEFAULT = "t,a,b,c,d,e,f1,f3,h"


def _run(scenario: str, args: argparse.Namespace, bootstrap: str,
         home: Path, broker_pid: int | None) -> list[dict[str, Any]]:
    if scenario == "t":
        return [clients.compare(5000, clients.CONCURRENCY)]
    if scenario == "a":
        return [run.throughput(bootstrap, home, args.events, args.fanout, int(workers),
                               broker_pid=broker_pid)
                for workers in args.workers.split(",")]
    if scenario == "b":
        return [run.latency(bootstrap, home, args.rate or 200.0, args.seconds, args.fanout)]
    if scenario == "c":
        return [run.slow_endpoint(bootstrap, home, args.events // 4, args.timeout,
                                  args.slow_rate, 10.0)]
    if scenario == "d":
        return [run.many_subscriptions(bootstrap, home, args.subscriptions,
                                       args.subscriptions // 10, args.events // 4)]
    if scenario == "e":
        return [run.retry_timing(bootstrap, home, args.retries, 5.0)]
    if scenario == "f1":
        return [faults.kill_restart(bootstrap, home, args.fault_rate, args.fanout,
                                    args.fault_log_level)]
    if scenario == "f2":
        return [brokerfault.broker_kill(home.parent, args.fault_rate, args.fanout,
                                        log_level=args.fault_log_level)]
    if scenario == "h":
        return [run.filters(bootstrap, home, args.filter_subscriptions,
                            args.filter_subscriptions // 10, args.events // 4)]
    if scenario == "f3":
        return [faults.rolling_restart(bootstrap, home, args.fault_rate, args.fanout,
                                       args.fault_log_level)]
    return [guardcost.guard_cost(bootstrap, home, args.guard_events or args.events,
                                 args.fanout, args.guard_rounds)]

if __name__ == "__main__":
    main()
