"""Session-wide: a real Kafka broker. Started here when none answers; a failure fails."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from localdev.kafka import LocalKafka


def _answers(bootstrap: str) -> bool:
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
    except Exception:
        return False
    return bool(metadata.brokers)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if _answers(bootstrap):
        yield bootstrap
        return
    # No broker: start the project's own (a LocalKafkaError here errors every test that
    # needs Kafka; nothing is skipped).
    local = LocalKafka.from_env()
    status, started = local.up(timeout=120)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = status.bootstrap
    try:
        yield status.bootstrap
    finally:
        if started:
            local.down()


@pytest.fixture(scope="session")
def local_broker(kafka_bootstrap: str) -> LocalKafka:
    """The project's own broker, for tests that restart it. Fails (never skips) otherwise."""
    local = LocalKafka.from_env()
    status = local.status()
    if not status.running or status.bootstrap != kafka_bootstrap:
        pytest.fail(f"restart tests need the broker `hookstream kafka up` manages; "
                    f"{kafka_bootstrap} is not it ({status.detail})")
    return local
