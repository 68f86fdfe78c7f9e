"""Where a job goes after an attempt: the log, a retry topic, or the dead-letter topic. Pure.

    deliveries ─fail─► retry.1m ─fail─► retry.5m ─fail─► retry.30m ─fail─► dlq
        │ 2xx              │ 2xx             │ 2xx             │ 2xx
        ▼                  ▼                 ▼                 ▼
                      success (delivery-log)

A disabled or deleted webhook's job goes straight to the dead-letter topic, unattempted.
Every path writes one delivery-log record, so the log holds each delivery's latest state.
"""

from __future__ import annotations

from dataclasses import replace

from ..kafka.topics import DELIVERY_LOG, DLQ, RETRY_TOPICS
from ..pipeline.records import Origin, Produce
from .guard import outcome_headers
from .models import (
    ATTEMPTS_EXHAUSTED,
    DEAD,
    DISABLED,
    RETRYING,
    SUCCESS,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    Outcome,
)

DUE_AT_HEADER = "hookstream-due-at"


def retry_after(attempt: int, delays: tuple[float, ...]) -> tuple[int, float] | None:
    """After failed attempt `attempt` (1-based): (retry topic index, delay s), or None if
    the delivery is exhausted and goes to the dead-letter topic."""
    if 1 <= attempt <= len(delays):
        return attempt - 1, delays[attempt - 1]
    return None


def verdict(job: DeliveryJob, outcome: Outcome, delays: tuple[float, ...]) -> str:
    """What an attempt made of its job: SUCCESS, RETRYING (a retry topic is left) or DEAD."""
    if outcome.ok:
        return SUCCESS
    return RETRYING if retry_after(job.attempt, delays) is not None else DEAD


def after_attempt(job: DeliveryJob, outcome: Outcome, delays: tuple[float, ...],
                  origin: Origin) -> list[Produce]:
    status = verdict(job, outcome, delays)
    if status == SUCCESS:
        return [_log(job, AttemptRecord.of(job, outcome, SUCCESS))]
    tried = replace(job, outcomes=(*job.outcomes, outcome))
    step = retry_after(job.attempt, delays)
    if status == DEAD or step is None:
        reason = (f"delivery {job.delivery_id} dead-lettered after {len(tried.outcomes)} "
                  f"attempts: {outcome.error}")
        letter = DeadLetter(tried, ATTEMPTS_EXHAUSTED, outcome.error, outcome.attempted_at)
        return [_dead(letter, origin, reason), _log(job, AttemptRecord.of(job, outcome, DEAD))]
    index, delay = step
    due = outcome.attempted_at + outcome.response_time_ms + int(delay * 1000)
    retry = replace(tried, attempt=job.attempt + 1, due_at=due)
    return [
        Produce(RETRY_TOPICS[index], job.webhook_id, retry.encode(),
                ((DUE_AT_HEADER, str(due).encode()),)),
        _log(job, AttemptRecord.of(job, outcome, RETRYING, next_attempt_at=due)),
    ]


def deferred(job: DeliveryJob, delays: tuple[float, ...], now_ms: int) -> list[Produce]:
    """A job its webhook cannot take soon: parked on the first retry topic, unattempted (the
    same attempt number), due after that topic's delay so the topic stays in due order."""
    due = now_ms + int(delays[0] * 1000)
    parked = replace(job, due_at=due)
    return [Produce(RETRY_TOPICS[0], job.webhook_id, parked.encode(),
                    ((DUE_AT_HEADER, str(due).encode()),))]


def undeliverable(job: DeliveryJob, reason: str, origin: Origin, now_ms: int) -> list[Produce]:
    """A job whose webhook is disabled or deleted: dead-lettered unattempted, nothing lost."""
    error = f"{reason.replace('_', ' ')}; not attempted"
    letter = DeadLetter(job, reason, error, now_ms)
    record = AttemptRecord(
        job.delivery_id, job.webhook_id, job.workspace_id, job.event_type, job.event_id,
        job.attempt, DISABLED if reason == WEBHOOK_DISABLED else DEAD, None, 0, error, now_ms)
    return [_dead(letter, origin, error), _log(job, record)]


def _log(job: DeliveryJob, record: AttemptRecord) -> Produce:
    # The headers say which job instance this is an outcome of (streams.delivery.guard).
    return Produce(DELIVERY_LOG, record.webhook_id, record.encode(),
                   outcome_headers(job.delivery_id, job.created_at, job.attempt))


def _dead(letter: DeadLetter, origin: Origin, why: str) -> Produce:
    job = letter.job
    headers = [
        ("hookstream-reason", letter.reason.encode()),
        ("hookstream-error", why[:1000].encode()),
        ("hookstream-attempts", str(len(job.outcomes)).encode()),
        ("hookstream-delivery-id", job.delivery_id.encode()),
        # What a listing shows, readable without decoding the job (streams.dlq.view).
        ("hookstream-workspace-id", job.workspace_id.encode()),
        ("hookstream-event", job.event_type.encode()),
        ("hookstream-event-id", job.event_id.encode()),
        ("hookstream-dead-at", str(letter.dead_at).encode()),
        *((("hookstream-last-error", letter.error[:1000].encode()),) if letter.error else ()),
        # Where the job was last read from, and the domain event it came from.
        ("hookstream-last-topic", origin.topic.encode()),
        ("hookstream-last-partition", str(origin.partition).encode()),
        ("hookstream-last-offset", str(origin.offset).encode()),
        ("hookstream-original-topic", (job.source_topic or "").encode()),
        ("hookstream-original-partition", str(job.source_partition).encode()),
        ("hookstream-original-offset", str(job.source_offset).encode()),
    ]
    return Produce(DLQ, job.webhook_id, letter.encode(), tuple(headers))
