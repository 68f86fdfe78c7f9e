"""Session-wide: a real Kafka broker. Started here when none answers; a failure fails.

Under pytest-xdist (`-n 2`) every worker process runs this fixture: the first to find no
broker starts it while holding a file lock (the other waits, then finds it answering), and
the controller stops it once every worker is done (a worker's session may end while the
other still uses the broker)."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from localdev.kafka import LocalKafka

#: In HOOKSTREAM_HOME: held while a worker checks for (and maybe starts) the broker.
_LOCK = "kafka-test.lock"
#: In HOOKSTREAM_HOME: the run id of the xdist run whose worker started the broker.
_STARTED_BY = "kafka-test.started-by"


def _answers(bootstrap: str) -> bool:
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
    except Exception:
        return False
    return bool(metadata.brokers)


def _xdist_run(config: pytest.Config) -> str | None:
    """The xdist run's id, in a worker process; None when not one."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["testrunuid"]) if workerinput is not None else None


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if _answers(bootstrap):
        yield bootstrap
        return
    # No broker: start the project's own (a LocalKafkaError here errors every test that
    # needs Kafka; nothing is skipped).
    local = LocalKafka.from_env()
    run = _xdist_run(request.config)
    if run is None:
        status, started = local.up(timeout=120)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = status.bootstrap
        try:
            yield status.bootstrap
        finally:
            if started:
                local.down()
        return
    local.home.mkdir(parents=True, exist_ok=True)
    with (local.home / _LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        # The other worker may have started it while this one waited.
        status, started = local.up(timeout=120)
        if started:
            (local.home / _STARTED_BY).write_text(run)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = status.bootstrap
    yield status.bootstrap  # stopped by the controller (pytest_sessionfinish below)


def pytest_configure(config: pytest.Config) -> None:
    """The controller names the run (xdist hands the id to every worker) so that it knows,
    at the end, whether a worker of this run started the broker."""
    if not hasattr(config, "workerinput") and hasattr(config.option, "testrunuid"):
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The xdist controller, after every worker is done: stop the broker a worker of this
    run started (none started: nothing to stop)."""
    config = session.config
    run = getattr(config.option, "testrunuid", None)
    if hasattr(config, "workerinput") or run is None:
        return
    local = LocalKafka.from_env()
    marker = Path(local.home) / _STARTED_BY
    try:
        started_by = marker.read_text()
    except OSError:
        return
    if started_by == run:
        local.down()
        marker.unlink(missing_ok=True)
