"""Writing arbitrary records to a deployment's topics and checking where they ended up:
on hookstream.invalid by their coordinates, and every consumer group caught up (lag 0)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.kafka.topics import (
    INVALID,
)
from streams.settings import Settings
from streams.telemetry.metrics import measure_lag
from streams.worker.pipeline import lag_groups

from .waiting import wait_until

T = TypeVar("T")

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Sent:
    """A record as the broker stored it."""

    topic: str  # with the deployment's prefix
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int

    @property
    def origin(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class TrackedProducer:
    """A plain producer (anyone who can write to a topic) that remembers where each record
    landed; `flush` fails if any was refused."""

    def __init__(self, bootstrap: str) -> None:
        # The client's own limit above the broker's, so that the broker decides.
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                   "message.max.bytes": 4_000_000})
        self.sent: list[Sent] = []
        self._errors: list[str] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: Headers | None = None) -> None:
        def landed(err: Any, msg: Any) -> None:
            if err is not None:
                self._errors.append(f"{topic}: {err}")
            else:
                self.sent.append(Sent(msg.topic(), msg.partition(), msg.offset(), key, value,
                                      msg.timestamp()[1]))
        wire: list[tuple[str, str | bytes | None]] = list(headers or [])
        self._producer.produce(topic, value, key, headers=wire or None, on_delivery=landed)
        self._producer.poll(0)

    def flush(self) -> list[Sent]:
        assert self._producer.flush(60) == 0, "records still unsent after 60 s"
        assert not self._errors, self._errors
        return self.sent


def wait_no_lag(s: Settings, timeout: float = 60.0) -> None:
    """Until every group's committed offsets reach the end of every topic it reads."""
    def behind() -> dict[str, dict[str, int]]:
        measured = measure_lag(s.bootstrap_servers, {
            group: (group, topics) for group, topics in lag_groups(s).items()})
        return {group: {t: n for t, n in lag.items() if n} for group, lag in measured.items()}

    try:
        wait_until(lambda: not any(behind().values()) or None, timeout=timeout,
                   what="every consumer group at the end of its topics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still behind: {behind()}") from None


def drawn(strategy: st.SearchStrategy[T], count: int,
          keep: Callable[[T], bool] = lambda _: True) -> list[T]:
    """`count` examples of `strategy` (fewer if `keep` refuses some), the same on every run:
    derandomized, no example database, no shrinking."""
    found: list[T] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: T) -> None:
        if keep(value):
            found.append(value)

    collect()
    return found


def headers_of(message: Any) -> dict[str, bytes]:
    return dict(message.headers() or [])


#: Quarantined copies by the (topic, partition, offset) they were read from.
Origins = dict[tuple[str, int, int], Any]


def quarantined_copies(dep: Any, sent: list[Sent], what: str) -> Origins:
    """Wait until every sent record is on hookstream.invalid; its copies by origin."""
    invalid = dep.reader(INVALID)

    def by_origin(messages: list[Any]) -> Origins:
        found = {}
        for m in messages:
            h = headers_of(m)
            found[(h["hookstream-source-topic"].decode(),
                   int(h["hookstream-source-partition"]),
                   int(h["hookstream-source-offset"]))] = m
        return found

    invalid.wait_for(lambda ms: {s.origin for s in sent} <= set(by_origin(ms)), timeout=60,
                     what=what)
    return by_origin(invalid.messages)
