"""The faust.App a worker runs, built from the settings it is given, and how we declare our
topics and tables on it. Nothing here exists until `build_app` is called.

Every worker started with the same settings joins the same consumer group and shares the
partitions.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import faust
from faust.transport import drivers as transport_drivers
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TableT, TopicT
from faust.web import drivers as web_drivers
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from ..settings import Settings, url_host
from .topics import INVALID_MAX_MESSAGE_BYTES


class OwnPagesOnly(AiohttpWeb):
    """faust's aiohttp server, serving our pages and none of faust's own views.

    faust mounts views of its own on the worker's port and none of them asks for a key:
    /router (every worker's URL and partitions), /table (table contents: sealed secrets,
    delivery attempts), /graph, statistics at / and /assignment/, /performance/, and an
    index at / when statistics are off. The settings below switch off all but the index,
    which has no setting, and faust lets APP_WEB_*_ENABLED in the environment switch them
    back on; a server that takes none of faust's blueprints serves none, whatever is set.

    `@app.table_route` does not need /router: it asks app.router, which reads the partition
    assignor's metadata, and forwards the request to the owner's same path
    (faust/app/router.py). tests/integration/test_web_surface.py reads a webhook's
    deliveries through both of two workers to show it.
    """

    default_blueprints = production_blueprints = debug_blueprints = optional_blueprints = ()


# faust finds its web server class by the scheme of its `web` setting, in this registry.
web_drivers.DRIVERS.aliases["hookstream"] = f"{__name__}:{OwnPagesOnly.__name__}"


class SnapshotFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, each fetch given a copy of the partitions it may return.

    faust hands a fetch its set of active partitions and then changes that set in place,
    from another thread, while the fetch waits for records (up to a second): a rebalance
    empties it, and aiokafka reads an empty set as "every partition"
    (`Fetcher.fetched_records`: `if partitions and tp not in partitions`). A fetch begun
    before a rebalance and ending just after the table's recovery had sought a changelog
    partition to its start returned that partition's records too; faust dropped them (its
    flow still stopped) and re-sought only committed partitions, so the recovery waited for
    records already read, for ever ("No event received for active tp", the history never
    loaded; seen in tests/integration/test_history_rebalance.py under load). With a copy
    taken when the fetch begins, it returns only what was active then; a partition resumed
    meanwhile is read by the next fetch.
    """

    async def getmany(self, active_partitions: set[TP] | None,
                      timeout: float) -> RecordMap:
        snapshot = None if active_partitions is None else set(active_partitions)
        return await super().getmany(snapshot, timeout)


class SnapshotFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return SnapshotFetchThread(self, loop=self.loop, beacon=self.beacon)


class SnapshotFetchTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with SnapshotFetchConsumer (its producer unchanged)."""

    Consumer = SnapshotFetchConsumer


# faust finds its transport by the scheme of its broker URLs, in this registry.
transport_drivers.TRANSPORTS.aliases["hookstream"] = (
    f"{__name__}:{SnapshotFetchTransport.__name__}")


def _broker_urls(bootstrap: str) -> str:
    return ";".join(f"hookstream://{host.strip()}" for host in bootstrap.split(",")
                    if host.strip())


#: The faust app's id, after the topic prefix: also its consumer group's name.
APP_ID = "hookstream"


def build_app(settings: Settings) -> faust.App:
    return faust.App(
        f"{settings.topic_prefix}{APP_ID}",
        broker=_broker_urls(settings.bootstrap_servers),
        # The control agent's table recovers from its compacted changelog on every start;
        # rocksdb:// (rocksdict) keeps it on disk for large installs.
        store="memory://",
        datadir=str(settings.home / f"worker-{settings.web_port}"),
        # faust binds to web_bind (every interface unless told) and advertises web_host
        # to the other workers; HOOKSTREAM_WEB_HOST was passed as the latter alone, so the
        # API listened on every interface whatever it said.
        web_bind=settings.web_host,
        web_host=url_host(settings.web_advertised_host),  # faust writes it into a URL
        web_port=settings.web_port,
        web_in_thread=False,
        web="hookstream://",
        # faust's own views, off in faust's terms too (OwnPagesOnly is what guarantees it).
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        topic_partitions=settings.partitions,
        # Settled by the worker (streams.kafka.admin.with_replication) before it builds us.
        topic_replication_factor=settings.replication_factor or 1,
        # acks=all: an offset is committed only after what it produced is on every replica.
        producer_acks=-1,
        # Table writes went out nearly one produce request each with faust's defaults (no
        # linger, 16 KiB batches): the history, when faust wrote it, fell 21 s behind 50,000
        # deliveries.
        producer_linger=0.005,
        producer_max_batch_size=1 << 20,
        # The agents' quarantined copies are the only faust writes near a topic's limit: they
        # go to hookstream.invalid, which takes twice what any input topic does.
        producer_max_request_size=INVALID_MAX_MESSAGE_BYTES,
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


def raw_topic(app: faust.App, settings: Settings, name: str, **options: Any) -> TopicT:
    """One of our topics (prefixed `name`) as bytes in, bytes out: we own the encoding."""
    return app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw",
                     internal=False, **options)


def raw_table(app: faust.App, settings: Settings, name: str,
              changelog: str) -> TableT[Any, Any]:
    """A bytes table whose changelog is our compacted topic `changelog` (we create it)."""
    return app.Table(
        name,
        schema=faust.Schema(key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw"),
        partitions=settings.partitions,
        changelog_topic=raw_topic(app, settings, changelog, partitions=settings.partitions,
                                  compacting=True),
    )


class DatadirError(Exception):
    """The worker's data directory cannot be created; the message is one line."""


def prepare_datadir(app: faust.App, settings: Settings) -> None:
    """Create this worker's faust directories under HOOKSTREAM_HOME, parents included.

    faust creates them itself when it starts, but without parents (`mkdir(exist_ok=True)`),
    so a worker started in a fresh directory, or in an image whose HOOKSTREAM_HOME did not
    exist yet, died with FileNotFoundError. Done before faust starts, an unusable
    HOOKSTREAM_HOME is also one clear DatadirError rather than a crash inside faust.
    """
    conf = app.conf
    # Tables live in memory (store="memory://"), so nothing is written here yet: directories
    # that already exist are taken as they are, writable or not.
    for directory in (conf.datadir, conf.appdir, conf.tabledir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unusable(settings, directory, exc) from None


def _unusable(settings: Settings, directory: Path, exc: OSError) -> DatadirError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        reason = f"permission denied (uid {os.getuid()})"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST) and (file := _file_in_the_way(directory)):
        reason = f"{file} is a file, not a directory"
    else:
        reason = (exc.strerror or str(exc)).lower()
    return DatadirError(
        f"HOOKSTREAM_HOME={settings.home}: cannot create {directory.absolute()}: {reason}")


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing part of `path` (from the root down) that is not a directory."""
    path = path.absolute()
    for part in (*reversed(path.parents), path):
        try:
            if part.exists() and not part.is_dir():
                return part
        except OSError:
            return None
    return None
