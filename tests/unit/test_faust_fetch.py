"""faust's consumer changes its set of active partitions in place while a fetch waits, and
aiokafka reads an empty set as "every partition" (streams.kafka.app.SnapshotFetchThread).
A fetch must return only what was active when it began."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka.app import SnapshotFetchConsumer, SnapshotFetchThread, build_app
from streams.settings import Settings

STREAM, CHANGELOG = TP("t.hookstream.deliveries", 0), TP("t.hookstream.delivery-history", 0)


def test_a_fetch_under_way_is_not_widened_by_a_rebalance_emptying_the_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The set a fetch reads when records come is the one it began with, not the set faust
    emptied (a revoke) or refilled (the recovery's changelog partitions) meanwhile."""
    seen: list[set[TP] | None] = []
    began, records_came = asyncio.Event(), asyncio.Event()

    async def fetch(self: Any, active_partitions: set[TP] | None, timeout: float) -> Any:
        began.set()
        await records_came.wait()
        seen.append(None if active_partitions is None else set(active_partitions))
        return {}

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "getmany", fetch)
    thread = SnapshotFetchThread.__new__(SnapshotFetchThread)  # only getmany is used

    async def main() -> None:
        active = {STREAM}
        fetching = asyncio.create_task(thread.getmany(active, 1.0))
        await began.wait()
        active.clear()  # faust's on_partitions_revoked: difference_update(revoked)
        records_came.set()
        await fetching
        active.add(CHANGELOG)  # the recovery resumed its changelog partition
        records_came.clear()
        began.clear()
        fetching = asyncio.create_task(thread.getmany(active, 1.0))
        await began.wait()
        active.clear()
        records_came.set()
        await fetching
        await thread.getmany(None, 1.0)  # a client-only app: every partition, as before

    asyncio.run(main())
    assert seen == [{STREAM}, {CHANGELOG}, None]


def test_the_workers_app_fetches_through_it() -> None:
    app = build_app(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}))
    assert isinstance(app.consumer, SnapshotFetchConsumer)
    assert isinstance(app.consumer._thread, SnapshotFetchThread)
