"""Delivery jobs and attempt records, as they travel on the delivery topics. Pure.

Decoding checks more than the schema does. Anyone who can write to a delivery topic can
write a job that decodes: one whose attempt number would overflow the next retry's Avro
int, whose ids cannot go in a header, or whose data would make a malformed body. Such a
job would make the delivery stage raise on every try, so `decode` refuses it (InvalidJob,
a SchemaError), and the stage quarantines it like any bytes that do not decode.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, TypeVar

from ..core import avrobinary, strictjson
from ..core.retryafter import parse_retry_after
from ..core.schemas import (
    DEAD_LETTER,
    DELIVERY_ATTEMPT,
    DELIVERY_JOB,
    SOE_MAGIC,
    SchemaError,
    registry,
)
from ..core.timeutil import parse_iso, to_ms

#: Latest states of a delivery, as the log records them.
SUCCESS = "success"
RETRYING = "retrying"
DEAD = "dead"
DISABLED = "disabled"
#: A test attempt (POST /v1/webhooks/{id}/test) that failed; tests are never retried.
FAILED = "failed"
#: Every status an attempt record can carry, as the API filters and documents them.
STATUSES = (SUCCESS, RETRYING, DEAD, DISABLED, FAILED)

#: Why a job is dead-lettered (the letter's `reason`, its `hookstream-reason` header).
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
#: The receiver answered 410 Gone: the endpoint is no more, so no retry. Also the
#: `disabled_reason` the dead-letter agent leaves on its webhook (streams.dlq.agent).
GONE = "gone"
WEBHOOK_DISABLED = "webhook_disabled"
WEBHOOK_DELETED = "webhook_deleted"
DEAD_LETTER_REASONS = (ATTEMPTS_EXHAUSTED, GONE, WEBHOOK_DISABLED, WEBHOOK_DELETED)
#: Dead letters that disable their webhook (the others come from a disabled or deleted one).
DISABLING_REASONS = (ATTEMPTS_EXHAUSTED, GONE)

#: Statuses whose Retry-After is honoured (streams.core.retryafter): Too Many Requests and
#: Service Unavailable, the two RFC 9110 gives it a meaning on. On any other it is ignored.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: 410 Gone: final at once, as Stripe and GitHub treat it.
GONE_STATUS = 410


#: The first attempt and one after each retry topic (streams.kafka.topics.RETRY_TOPICS; the
#: settings insist on exactly three retry delays).
MAX_ATTEMPTS = 4
#: Attempt records are ids, codes and an error of a few hundred bytes; the history table
#: copies each into its changelog, so a bigger one (not ours) is refused.
MAX_ATTEMPT_RECORD_BYTES = 64 * 1024
#: Ids that travel in HTTP headers (X-Webhook-Delivery, X-Webhook-Event) or key topics:
#: visible ASCII, as control.commands requires of webhook ids.
_HEADER_SAFE = re.compile(r"[!-~]{1,256}")


T = TypeVar("T")


def requested_wait(status: int, retry_after: str | None, now_s: float) -> float | None:
    """Seconds a receiver's answer asks us to wait before the retry: its Retry-After read
    at `now_s` (epoch seconds) on a RETRY_AFTER_STATUSES answer; None on any other, or
    without a readable one (the ladder's delay then)."""
    if retry_after is None or status not in RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(retry_after, now_s)


class InvalidJob(SchemaError):
    """A job that decodes but must not be attempted; the message says why."""


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
    #: Seconds the receiver asked us to wait (Retry-After on a 429 or 503, read when it
    #: answered), else None. Not part of the record: what it decides is the retry's due
    #: time, which the job carries; so it is not compared either (equal records, equal
    #: outcomes).
    retry_after_s: float | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.response_code is not None and (
            200 <= self.response_code < 300
        )

    @property
    def gone(self) -> bool:
        """The receiver answered 410 Gone: no retry, and its webhook is disabled."""
        return self.response_code == GONE_STATUS

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
        """The job, checked (`check_job`); raises SchemaError and nothing else."""
        record = registry().decode(DELIVERY_JOB, payload)
        return check_job(_from_record(cls.from_record, record, "job"))


class JobsOfEvent:
    """The jobs of one event, one per webhook, encoded as DeliveryJob.encode encodes them
    (test_models holds the two equal), the part they share encoded once: a job's first
    fields are its delivery id and webhook id, so each is those two strings before the
    same bytes. Fan-out encoding every job whole was about 8% of a loaded worker's CPU.

    `shared` is any of the jobs; its ids are not used."""

    def __init__(self, shared: DeliveryJob) -> None:
        whole = replace(shared, delivery_id="", webhook_id="").encode()
        # Single-object header (marker + fingerprint), two empty strings (length 0 each),
        # then the rest.
        self._header, self._rest = whole[:10], whole[12:]

    def encode(self, delivery_id: str, webhook_id: str) -> bytes:
        return b"".join((self._header, avrobinary.string(delivery_id),
                         avrobinary.string(webhook_id), self._rest))


@cache
def _attempt_header() -> bytes:
    """The single-object header of the attempt record's current schema."""
    return SOE_MAGIC + registry().fingerprints[DELIVERY_ATTEMPT]


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
        """As registry().encode writes it (tests/unit/test_avrobinary.py holds the two
        equal), put together by hand: one per delivery, a quarter of fastavro's time. A
        value the hand path does not take goes to fastavro, which encodes it or says why
        not (SchemaError)."""
        try:
            return b"".join((
                _attempt_header(), avrobinary.string(self.delivery_id),
                avrobinary.string(self.webhook_id), avrobinary.string(self.workspace_id),
                avrobinary.string(self.event_type), avrobinary.string(self.event_id),
                avrobinary.int32(self.attempt), avrobinary.string(self.status),
                avrobinary.optional_int32(self.response_code),
                avrobinary.int32(self.response_time_ms), avrobinary.optional_string(self.error),
                avrobinary.long(self.attempted_at),
                avrobinary.optional_long(self.next_attempt_at)))
        except (TypeError, ValueError, OverflowError):
            return registry().encode(DELIVERY_ATTEMPT, self.to_record())

    @classmethod
    def decode(cls, payload: bytes) -> AttemptRecord:
        """Raises SchemaError and nothing else."""
        return _from_record(lambda fields: cls(**fields), _attempt_fields(payload),
                            "attempt record")

    @staticmethod
    def webhook_of(payload: bytes) -> str:
        """The webhook of an attempt record that `decode` accepts (SchemaError, the same,
        when it would not), without building the record: the history's feeder keeps the
        bytes and needs only this, and building it was 30% of its decode (11.4 -> 8.0 us)."""
        webhook: str = _attempt_fields(payload)["webhook_id"]
        return webhook


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
        """The letter, its job checked (`check_job`); raises SchemaError and nothing else."""
        r = registry().decode(DEAD_LETTER, payload)
        letter = _from_record(
            lambda r: cls(DeliveryJob.from_record(r["job"]), r["reason"], r["error"],
                          to_ms(r["dead_at"])), r, "dead letter")
        check_job(letter.job)
        return letter


def check_job(job: DeliveryJob) -> DeliveryJob:
    """The job if it can be attempted, retried and dead-lettered as it is, else InvalidJob.

    It runs on every job the delivery stage reads. Measured with timeit on the 2-core
    development machine: about 4 us for a typical job (data of a few hundred bytes), where
    fastavro's decode takes about 20 us. Most of it is parsing data_json, which grows with
    it (about 80 MB/s: 10 KB of data cost some 120 us), the price of never sending a body
    that is not one JSON object.
    """
    if not 1 <= job.attempt <= MAX_ATTEMPTS:
        raise InvalidJob(f"field 'attempt' is {job.attempt}, not 1 to {MAX_ATTEMPTS}")
    for name, value in (("delivery_id", job.delivery_id), ("webhook_id", job.webhook_id),
                        ("event_type", job.event_type)):
        if not _HEADER_SAFE.fullmatch(value):
            raise InvalidJob(f"field '{name}' must be 1 to 256 visible ASCII characters")
    if not job.workspace_id or not job.event_id:
        raise InvalidJob("fields 'workspace_id' and 'event_id' must not be empty")
    try:
        parse_iso(job.event_timestamp)
        data = strictjson.loads(job.data_json)
    except (ValueError, RecursionError) as exc:
        raise InvalidJob(f"field 'event_timestamp' or 'data_json' is malformed: {exc}") from exc
    if not isinstance(data, dict):
        # It is spliced into the body as it is (payload.webhook_body): it must be an object.
        raise InvalidJob("field 'data_json' is not a JSON object")
    return job


def _attempt_fields(payload: bytes) -> dict[str, Any]:
    """An attempt record's fields, checked (times in epoch ms); raises SchemaError and
    nothing else."""
    if len(payload) > MAX_ATTEMPT_RECORD_BYTES:
        raise SchemaError(f"attempt record is {len(payload)} bytes, over "
                          f"{MAX_ATTEMPT_RECORD_BYTES}")
    r = registry().decode(DELIVERY_ATTEMPT, payload)

    def times(r: dict[str, Any]) -> dict[str, Any]:
        r["attempted_at"] = to_ms(r["attempted_at"])
        if r["next_attempt_at"] is not None:
            r["next_attempt_at"] = to_ms(r["next_attempt_at"])
        return r

    fields = _from_record(times, r, "attempt record")
    if not fields["webhook_id"]:
        raise SchemaError("attempt record: field 'webhook_id' is empty")
    return fields


def _from_record(build: Callable[[Any], T], record: Any, what: str) -> T:
    """build(record), any failure (a field of an unexpected type) as SchemaError."""
    try:
        return build(record)
    except Exception as exc:
        raise SchemaError(f"not a valid {what}: {type(exc).__name__}: {exc}") from exc
