"""The faust.App, and how we declare its topics and tables. Agents and services import it.

Configured once from the environment (streams.settings), so every worker started with the
same settings joins the same consumer group and shares the partitions.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TableT, TopicT

from .settings import Settings

settings = Settings.from_env()


def _broker_urls(bootstrap: str) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


app = faust.App(
    f"{settings.topic_prefix}hookstream",
    broker=_broker_urls(settings.bootstrap_servers),
    # The control agent's table recovers from its compacted changelog on every start;
    # rocksdb:// (rocksdict) keeps it on disk for large installs.
    store="memory://",
    datadir=str(settings.home / f"worker-{settings.web_port}"),
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    # acks=all: an offset is committed only after what it produced is on every replica.
    producer_acks=-1,
    # Table writes (history: two per delivery attempt) went out nearly one produce request
    # each with faust's defaults (no linger, 16 KiB batches): the history fell 21 s behind
    # 50,000 deliveries. Batching them is most of a worker's CPU saved on history.
    producer_linger=0.005,
    producer_max_batch_size=1 << 20,
    consumer_auto_offset_reset="earliest",
    # Commit at least every second: a crash replays at most ~1 s of fan-out.
    broker_commit_interval=1.0,
    table_standby_replicas=0,
    # faust's default (60 s) leaves a killed worker's partitions idle for a minute; 15 s
    # hands them over sooner while tolerating a loaded machine's pauses.
    broker_session_timeout=15.0,
    broker_heartbeat_interval=3.0,
    autodiscover=False,
)


def raw_topic(name: str, **options: Any) -> TopicT:
    """One of our topics (prefixed `name`) as bytes in, bytes out: we own the encoding."""
    return app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw",
                     internal=False, **options)


def raw_table(name: str, changelog: str) -> TableT[Any, Any]:
    """A bytes table whose changelog is our compacted topic `changelog` (we create it)."""
    return app.Table(
        name,
        schema=faust.Schema(key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw"),
        partitions=settings.partitions,
        changelog_topic=raw_topic(changelog, partitions=settings.partitions, compacting=True),
    )
