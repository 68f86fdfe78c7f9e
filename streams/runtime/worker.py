"""`hookstream worker`: one process running fan-out, control, delivery and the web server.

Start as many as you like with the same settings: they form consumer groups and share the
partitions (fan-out and control through faust's group, delivery through its own).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from typing import Any

import faust
import mode
import mode.loop

from ..api import webhooks as _api  # noqa: F401 - registers the API views
from ..api.auth import may_see
from ..api.forwarding import caller
from ..console import pages as _console  # noqa: F401 - registers the console pages
from ..control import agent as _control_agent  # noqa: F401 - registers the agent
from ..core.apikeys import Principal
from ..delivery.stage import DeliveryWorker
from ..dlq import agent as _deadletters  # noqa: F401 - registers the agent
from ..fanout.stage import FanoutStage
from ..history import table as _history  # noqa: F401 - registers the agent and its view
from ..kafka.admin import create_topics
from ..kafka.topics import CONTROL, DELIVERIES, DELIVERY_LOG, DLQ, RETRY_TOPICS, domain_topic
from . import metrics
from .app import DatadirError, app, prepare_datadir, settings
from .logs import logging_config
from .views import ALL as ALL_TABLES
from .views import subscriptions as view

log = logging.getLogger(__name__)

#: Seconds between samples of lag, backlog and throughput (metrics and the console's charts).
LAG_INTERVAL_S = float(os.environ.get("HOOKSTREAM_SAMPLE_INTERVAL", "") or 10.0)


#: Subscriptions added since the last gc.freeze() that make the next one worth it.
FREEZE_GROWTH = 10_000


def retry_topics() -> list[str]:
    return [settings.topic(t) for t in RETRY_TOPICS]


def lag_groups() -> dict[str, list[str]]:
    """Each consumer group of the pipeline and the topics it reads."""
    p = settings.topic_prefix
    return {
        f"{p}{FanoutStage.group}": [settings.topic(domain_topic(f)) for f in settings.families],
        f"{p}{DeliveryWorker.group}": [settings.topic(DELIVERIES), *retry_topics()],
        f"{p}hookstream": [settings.topic(CONTROL), settings.topic(DLQ),
                           settings.topic(DELIVERY_LOG)],
    }


@app.service
class Pipeline(mode.Service):
    """Starts the subscriptions view and the fan-out and delivery stages with the app."""

    fanout: FanoutStage | None = None
    delivery: DeliveryWorker | None = None

    async def on_start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        for table in ALL_TABLES:
            await table.start()
        self.fanout = FanoutStage(settings, view)
        self.delivery = DeliveryWorker(settings, view)
        await self.fanout.start()
        await self.delivery.start()

    @mode.Service.task
    async def _freeze_loaded_tables(self) -> None:
        """Exempt the loaded tables from the cyclic GC, again whenever they have grown.

        A worker holding 100,000 subscriptions has millions of long-lived objects; every
        full collection walked them all, and in-flight deliveries' short-lived objects
        triggered one every few seconds. Frozen objects are still freed by reference
        counting; only cyclic garbage that exists at a freeze is kept, which is why this
        happens on growth (at most a few times in a worker's life), not on a timer.
        """
        for table in ALL_TABLES:
            await table.ready.wait()
        frozen = -FREEZE_GROWTH
        while not self.should_stop:
            if len(view.index) >= frozen + FREEZE_GROWTH:
                gc.freeze()
                frozen = len(view.index)
            await self.sleep(5.0)

    @mode.Service.task
    async def _measure_lag(self) -> None:
        """Consumer lag and retry backlog for /metrics, every LAG_INTERVAL_S."""
        async with metrics.LagProbe(settings.bootstrap_servers) as probe:
            while not self.should_stop:
                metrics.THROUGHPUT.sample(time.time())
                await probe.refresh(lag_groups(), retry_topics(),
                                    f"{settings.topic_prefix}{DeliveryWorker.group}")
                await self.sleep(LAG_INTERVAL_S)

    async def on_stop(self) -> None:
        for stage in (self.fanout, self.delivery):
            if stage is not None:
                await stage.stop()
        for table in ALL_TABLES:
            await table.stop()


def _dump_tasks() -> None:
    """SIGUSR1: where every asyncio task waits (its await chain), counted, to stderr."""
    chains: dict[str, int] = {}
    for task in asyncio.all_tasks():
        links: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(links) < 20:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is None:
                links.append(type(awaited).__name__)
                break
            links.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        chain = " > ".join(links)
        chains[chain] = chains.get(chain, 0) + 1
    for chain, count in sorted(chains.items(), key=lambda item: -item[1]):
        print(f"{count:6d} {chain}", file=sys.stderr)
    sys.stderr.flush()


@app.page("/healthz")
async def healthz(_web, request):  # type: ignore[no-untyped-def]
    """Alive: the process answers."""
    return _web.json({"status": "ok"})


@app.page("/readyz")
async def readyz(_web, request):  # type: ignore[no-untyped-def]
    """Ready: subscriptions loaded, and both consumer groups settled with partitions."""
    pipeline = next((s for s in app._extra_service_instances or () if isinstance(s, Pipeline)),
                    None)
    fanout = pipeline.fanout if pipeline is not None else None
    delivery = pipeline.delivery if pipeline is not None else None
    checks = {
        "subscriptions_loaded": all(table.ready.is_set() for table in ALL_TABLES),
        "subscriptions": len(view.index),
        "control_partitions": len(app.consumer.assignment()) if app.consumer else 0,
        "rebalancing": bool(app.rebalancing),
        "fanout_partitions": fanout.assigned_count() if fanout is not None else 0,
        "delivery_partitions": delivery.assigned_count() if delivery is not None else 0,
    }
    ready = (checks["subscriptions_loaded"] and not checks["rebalancing"]
             and checks["control_partitions"] > 0 and checks["fanout_partitions"] > 0
             and checks["delivery_partitions"] > 0)
    return _web.json({"ready": ready, **checks}, status=200 if ready else 503)


@app.page("/metrics")
async def metrics_page(_web, request):  # type: ignore[no-untyped-def]
    """Prometheus text format."""
    # Counted as subscriptions change (SubscriptionIndex), never by walking them per scrape.
    metrics.SUBSCRIPTIONS.labels(state="active").set(view.index.active)
    metrics.SUBSCRIPTIONS.labels(state="disabled").set(view.index.disabled)
    return _web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


@app.page("/internal/subscriptions/{webhook_id}")
async def subscription_state(_web, request, webhook_id: str):  # type: ignore[no-untyped-def]
    """This worker's view of one webhook, without its secret (for probes and tests)."""
    principal = caller(_web, request)
    if not isinstance(principal, Principal):
        return principal
    sub = view.index.get(webhook_id)
    if sub is None or not may_see(principal, webhook_id):
        return _web.json({"error": "not found"}, status=404)
    state = sub.to_record()
    del state["secret"]
    return _web.json(state)


def run_worker() -> None:
    # Before anything else, so that an unusable HOOKSTREAM_HOME is one line and exit 1, not
    # a traceback from inside faust's start-up (the same form as the CLI's errors).
    try:
        prepare_datadir()
    except DatadirError as exc:
        sys.exit(f"error: {exc}")
    # uvloop: the event loop's own bookkeeping (timers, callbacks, epoll) was a fifth of a
    # loaded worker's CPU under asyncio's loop. Set before faust creates its loop.
    mode.loop.use("uvloop")
    create_topics(settings)
    json_logs = os.environ.get("HOOKSTREAM_LOG_FORMAT", "json").strip().lower() != "text"
    worker = faust.Worker(
        app, loglevel=settings.log_level, quiet=True,
        logging_config=logging_config(settings.log_level) if json_logs else None)
    # faust's terminal spinner sets the root logger to DEBUG whenever the level is WARNING
    # or above, so every library debug call built a record: ~5% of a loaded worker's CPU.
    worker.spinner = None
    worker.execute_from_commandline()
