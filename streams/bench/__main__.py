"""`python -m streams.bench` (also `hookstream bench`, `make bench`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..localkafka import LocalKafka
from . import clients, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="t,a,b,c,d,e",
                        help="comma-separated: t http clients, a throughput, b latency, "
                             "c slow endpoint, d many subscriptions, e retry timing")
    parser.add_argument("--events", type=int, default=20_000, help="events for (a)")
    parser.add_argument("--fanout", type=int, default=5)
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker process counts to run (a) with")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s offered in (b)")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of (b)")
    parser.add_argument("--subscriptions", type=int, default=100_000,
                        help="subscriptions in (d), over a tenth as many workspaces")
    parser.add_argument("--timeout", type=float, default=10.0, help="delivery timeout in (c)")
    parser.add_argument("--slow-rate", type=float, default=100.0,
                        help="events/s offered to the ten endpoints of (c) for 10 s")
    parser.add_argument("--retries", type=int, default=100,
                        help="deliveries that fail in (e); each retries 3 times")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    kafka = LocalKafka.from_env()
    status, _ = kafka.up()
    home = Path(".hookstream/bench")
    home.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in args.scenarios.split(","):
        if scenario == "a":
            for workers in args.workers.split(","):
                results.append(run.throughput(status.bootstrap, home, args.events,
                                              args.fanout, int(workers)))
        elif scenario == "b":
            results.append(run.latency(status.bootstrap, home, args.rate, args.seconds,
                                       args.fanout))
        elif scenario == "c":
            results.append(run.slow_endpoint(status.bootstrap, home, args.events // 4,
                                              args.timeout, args.slow_rate, 10.0))
        elif scenario == "d":
            results.append(run.many_subscriptions(status.bootstrap, home, args.subscriptions,
                                                  args.subscriptions // 10, args.events // 4))
        elif scenario == "t":
            results.append(clients.compare(5000, run.CONCURRENCY))
        elif scenario == "e":
            results.append(run.retry_timing(status.bootstrap, home, args.retries, 5.0))
        else:
            parser.error(f"unknown scenario {scenario!r}")
    console = Console()
    for result in results:
        table = Table(title=result["scenario"], show_header=False)
        for key, value in result.items():
            if key != "scenario":
                table.add_row(key, str(value))
        console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
