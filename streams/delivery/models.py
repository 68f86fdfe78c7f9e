"""Delivery jobs and attempt records, as they travel on the delivery topics. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..schemas import DEAD_LETTER, DELIVERY_ATTEMPT, DELIVERY_JOB, registry
from ..timeutil import to_ms

#: Latest states of a delivery, as the log records them.
SUCCESS = "success"
RETRYING = "retrying"
DEAD = "dead"
DISABLED = "disabled"
#: A test attempt (POST /v1/webhooks/{id}/test) that failed; tests are never retried.
FAILED = "failed"

#: Why a job is dead-lettered.
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
WEBHOOK_DISABLED = "webhook_disabled"
WEBHOOK_DELETED = "webhook_deleted"


def delivery_id_for(event_id: str, webhook_id: str) -> str:
    """One id per (event, webhook): the same after any reprocessing, retry or replay."""
    digest = hashlib.sha256(f"{event_id}\x00{webhook_id}".encode()).hexdigest()
    return f"dlv_{digest[:24]}"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    attempt: int
    attempted_at: int
    response_code: int | None
    response_time_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.response_code is not None and (
            200 <= self.response_code < 300
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt, "attempted_at": self.attempted_at,
            "response_code": self.response_code, "response_time_ms": self.response_time_ms,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Outcome:
        return cls(r["attempt"], to_ms(r["attempted_at"]), r["response_code"],
                   r["response_time_ms"], r["error"])


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: str
    webhook_id: str
    workspace_id: str
    event_id: str
    event_type: str
    event_timestamp: str
    data_json: str
    attempt: int
    created_at: int
    due_at: int | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    def to_record(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id, "webhook_id": self.webhook_id,
            "workspace_id": self.workspace_id, "event_id": self.event_id,
            "event_type": self.event_type, "event_timestamp": self.event_timestamp,
            "data_json": self.data_json, "attempt": self.attempt,
            "created_at": self.created_at, "due_at": self.due_at,
            "source_topic": self.source_topic, "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "outcomes": [o.to_record() for o in self.outcomes],
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> DeliveryJob:
        return cls(
            delivery_id=r["delivery_id"], webhook_id=r["webhook_id"],
            workspace_id=r["workspace_id"], event_id=r["event_id"],
            event_type=r["event_type"], event_timestamp=r["event_timestamp"],
            data_json=r["data_json"], attempt=r["attempt"], created_at=to_ms(r["created_at"]),
            due_at=None if r["due_at"] is None else to_ms(r["due_at"]),
            source_topic=r["source_topic"], source_partition=r["source_partition"],
            source_offset=r["source_offset"],
            outcomes=tuple(Outcome.from_record(o) for o in r["outcomes"]),
        )

    def encode(self) -> bytes:
        return registry().encode(DELIVERY_JOB, self.to_record())

    @classmethod
    def decode(cls, payload: bytes) -> DeliveryJob:
        return cls.from_record(registry().decode(DELIVERY_JOB, payload))


@dataclass(frozen=True)
class AttemptRecord:
    """One line of hookstream.delivery-log."""

    delivery_id: str
    webhook_id: str
    workspace_id: str
    event_type: str
    event_id: str
    attempt: int
    status: str
    response_code: int | None
    response_time_ms: int
    error: str | None
    attempted_at: int
    next_attempt_at: int | None = None

    @classmethod
    def of(cls, job: DeliveryJob, outcome: Outcome, status: str,
           next_attempt_at: int | None = None) -> AttemptRecord:
        return cls(job.delivery_id, job.webhook_id, job.workspace_id, job.event_type,
                   job.event_id, outcome.attempt, status, outcome.response_code,
                   outcome.response_time_ms, outcome.error, outcome.attempted_at,
                   next_attempt_at)

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def encode(self) -> bytes:
        return registry().encode(DELIVERY_ATTEMPT, self.to_record())

    @classmethod
    def decode(cls, payload: bytes) -> AttemptRecord:
        r = registry().decode(DELIVERY_ATTEMPT, payload)
        r["attempted_at"] = to_ms(r["attempted_at"])
        if r["next_attempt_at"] is not None:
            r["next_attempt_at"] = to_ms(r["next_attempt_at"])
        return cls(**r)


@dataclass(frozen=True)
class DeadLetter:
    """A job that will not be tried again until an operator replays it."""

    job: DeliveryJob
    reason: str
    error: str | None
    dead_at: int

    def encode(self) -> bytes:
        return registry().encode(DEAD_LETTER, {
            "job": self.job.to_record(), "reason": self.reason, "error": self.error,
            "dead_at": self.dead_at})

    @classmethod
    def decode(cls, payload: bytes) -> DeadLetter:
        r = registry().decode(DEAD_LETTER, payload)
        return cls(DeliveryJob.from_record(r["job"]), r["reason"], r["error"],
                   to_ms(r["dead_at"]))
