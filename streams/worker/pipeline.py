"""The service that runs beside faust's own: the local views, the history's feeder, the
fan-out and delivery stages, lag sampling and the GC freeze; and what /readyz reports of
them."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import mode

from ..delivery.stage import DeliveryWorker
from ..fanout.stage import FanoutStage
from ..history.feeder import HistoryFeeder
from ..kafka.app import APP_ID
from ..kafka.topics import CONTROL, DELIVERIES, DELIVERY_LOG, DLQ, RETRY_TOPICS, domain_topic
from ..runtime.context import Runtime
from ..settings import Settings
from ..telemetry import metrics

#: Subscriptions added since the last gc.freeze() that make the next one worth it.
FREEZE_GROWTH = 10_000
#: The cyclic GC's thresholds once the views are loaded (CPython's own: 700, 10, 10).
#: A loaded worker's new objects are its deliveries in flight: tasks, jobs, records, which
#: reference counting frees and which almost never form cycles (a 50,000-delivery run of
#: `make bench` (a) collected some 2,000 objects in all). At 700 the collector walked the
#: thousands of jobs waiting for their slots over and over: 1.9 s of a 26 CPU-s run, 7% of
#: the worker (py-spy), with full collections of up to 53 ms. At 50,000 new objects (net of
#: those freed) it spent 0.66-0.84 s a run, and at a steady 1,000 deliveries/s it did not
#: run once after the start. Cyclic garbage waits for at most that many objects: a few MB.
GC_THRESHOLDS = (50_000, 20, 10)


@dataclass
class Stages:
    """The stages of this worker once started (None before): the service fills them in;
    the history's feeder is built with the app (it follows faust's rebalances)."""

    history: HistoryFeeder
    fanout: FanoutStage | None = None
    delivery: DeliveryWorker | None = None


def lag_groups(s: Settings) -> dict[str, list[str]]:
    """Each consumer group of the pipeline and the topics it reads."""
    p = s.topic_prefix
    return {
        f"{p}{FanoutStage.group}": [s.topic(domain_topic(f)) for f in s.families],
        f"{p}{DeliveryWorker.group}": [s.topic(t) for t in (DELIVERIES, *RETRY_TOPICS)],
        f"{p}{HistoryFeeder.group}": [s.topic(DELIVERY_LOG)],
        f"{p}{APP_ID}": [s.topic(CONTROL), s.topic(DLQ)],
    }


def readiness(rt: Runtime, stages: Stages) -> dict[str, Any]:
    """Ready: local views loaded, and every consumer group settled with partitions."""
    app = rt.app
    checks: dict[str, Any] = {
        "subscriptions_loaded": all(view.ready.is_set() for view in rt.views),
        "subscriptions": len(rt.subscriptions.index),
        "control_partitions": len(app.consumer.assignment()) if app.consumer else 0,
        "rebalancing": bool(app.rebalancing),
        "fanout_partitions": stages.fanout.assigned_count() if stages.fanout else 0,
        "delivery_partitions": stages.delivery.assigned_count() if stages.delivery else 0,
        # Informational: with more workers than partitions, some hold none.
        "history_partitions": stages.history.partitions(),
        # The history answers in full (not 503 history_loading) for what faust gave us.
        "history_loaded": stages.history.settled(),
    }
    checks["ready"] = bool(
        checks["subscriptions_loaded"] and not checks["rebalancing"]
        and checks["history_loaded"]
        and checks["control_partitions"] > 0 and checks["fanout_partitions"] > 0
        and checks["delivery_partitions"] > 0)
    return checks


class Pipeline(mode.Service):
    """Started by faust with the app (App.service); `rt` and `stages` are set by
    `service_for`."""

    rt: Runtime
    stages: Stages

    async def on_start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        rt = self.rt
        for view in rt.views:
            await view.start()
        await self.stages.history.start()
        self.stages.fanout = FanoutStage(rt.settings, rt.subscriptions)
        self.stages.delivery = DeliveryWorker(rt.settings, rt.subscriptions, box=rt.secrets)
        await self.stages.fanout.start()
        await self.stages.delivery.start()

    @mode.Service.task
    async def _freeze_loaded_views(self) -> None:
        """Exempt the loaded views from the cyclic GC, again whenever they have grown; and
        from then on, collect less often (GC_THRESHOLDS).

        A worker holding 100,000 subscriptions has millions of long-lived objects; every
        full collection walked them all, and in-flight deliveries' short-lived objects
        triggered one every few seconds. Frozen objects are still freed by reference
        counting; only cyclic garbage that exists at a freeze is kept, which is why this
        happens on growth (at most a few times in a worker's life), not on a timer.
        The thresholds change once the views are loaded, so a worker loading a million
        subscriptions at its start collects as it always did.
        """
        for view in self.rt.views:
            await view.ready.wait()
        gc.set_threshold(*GC_THRESHOLDS)
        index = self.rt.subscriptions.index
        frozen = -FREEZE_GROWTH
        while not self.should_stop:
            if len(index) >= frozen + FREEZE_GROWTH:
                gc.freeze()
                frozen = len(index)
            await self.sleep(5.0)

    @mode.Service.task
    async def _measure_lag(self) -> None:
        """Consumer lag and retry backlog for /metrics, every sample interval."""
        s = self.rt.settings
        retry_topics = [s.topic(t) for t in RETRY_TOPICS]
        async with metrics.LagProbe(s.bootstrap_servers) as probe:
            while not self.should_stop:
                metrics.THROUGHPUT.sample(time.time())
                await probe.refresh(lag_groups(s), retry_topics,
                                    f"{s.topic_prefix}{DeliveryWorker.group}")
                await self.sleep(s.sample_interval)

    async def on_stop(self) -> None:
        for stage in (self.stages.fanout, self.stages.delivery):
            if stage is not None:
                await stage.stop()
        await self.stages.history.stop()
        for view in self.rt.views:
            await view.stop()


def service_for(rt: Runtime, stages: Stages) -> type[Pipeline]:
    """The Pipeline class faust instantiates, bound to this runtime."""
    return type("Pipeline", (Pipeline,), {"rt": rt, "stages": stages})


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
