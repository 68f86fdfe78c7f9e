"""Where a job goes after an attempt: the log, a retry topic, or the dead-letter topic. Pure.

    deliveries ─fail─► retry.1m ─fail─► retry.5m ─fail─► retry.30m ─fail─► dlq
        │ 2xx              │ 2xx             │ 2xx             │ 2xx
        ▼                  ▼                 ▼                 ▼
                      success (delivery-log)

A disabled or deleted webhook's job goes straight to the dead-letter topic, unattempted.
A 410 Gone goes there at once too (reason `gone`), whatever attempt it was: the receiver
said the endpoint is no more, and the dead-letter agent disables its webhook.
Every path writes one delivery-log record, so the log holds each delivery's latest state.

Retry-After. A 429 or 503 may ask for a longer wait than the ladder's; the retry is then due
`core.retryafter.retry_delay` after the attempt (never sooner than the ladder, at most its
rung's delay plus the next rung's: 6, 35 and 60 min by default), and still counts as one of
the three retries. It goes on its rung's topic as any retry, with that due time; but the
stage holds a retry at most its topic's delay after it was appended (stage.hold_until), and
no topic's delay covers 35 or 60 min. So a job read before its due time is parked again
(`repark`), unattempted, with the same due time, on the topic `park_topic` picks: a leg
held its topic's whole delay, in due order with everything else there, or a last one held
until the due time. The chain ends at the due time (tests/unit/test_routing.py walks it),
and no leg waits past its topic's delay after it was appended, so nobody queued behind it
waits longer than without it. Only a last leg shorter than its topic's delay can be late,
queued behind a head due later there, and by less than that delay minus the time it had
left: under a minute with the default ladder, and nothing on a quiet partition.
"""

from __future__ import annotations

from dataclasses import replace

from ..core.retryafter import retry_delay
from ..kafka.topics import DELIVERY_LOG, DLQ, RETRY_TOPICS
from ..pipeline.records import Origin, Produce
from .guard import outcome_headers
from .models import (
    ATTEMPTS_EXHAUSTED,
    DEAD,
    DISABLED,
    GONE,
    RETRYING,
    SUCCESS,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    Outcome,
)

DUE_AT_HEADER = "hookstream-due-at"
#: How much longer than a topic's delay a wait may be and still be parked there for that
#: whole delay (see park_topic).
LEG_RATIO = 8
#: Lateness a parked job may risk to save legs: a wait a hair shorter than a topic's
#: delay (the milliseconds a produce takes) goes there in one leg. About what a poll, a
#: hold timer and a loaded worker add to any retry anyway (README: 54-86 ms measured).
PARK_SLACK_S = 1.0
#: The shortest delay that holds a job at all: due times and holds are whole milliseconds.
_HOLDS_S = 0.001


def next_rung(attempt: int, delays: tuple[float, ...]) -> int | None:
    """After failed attempt `attempt` (1-based): the retry topic index (its rung), or None
    if the delivery is exhausted and goes to the dead-letter topic."""
    if 1 <= attempt <= len(delays):
        return attempt - 1
    return None


def verdict(job: DeliveryJob, outcome: Outcome, delays: tuple[float, ...]) -> str:
    """What an attempt made of its job: SUCCESS, RETRYING (a retry topic is left) or DEAD."""
    if outcome.ok:
        return SUCCESS
    if outcome.gone:
        return DEAD
    return RETRYING if next_rung(job.attempt, delays) is not None else DEAD


def dead_reason(outcome: Outcome) -> str:
    """Why a failed attempt that ends its delivery does: GONE or ATTEMPTS_EXHAUSTED."""
    return GONE if outcome.gone else ATTEMPTS_EXHAUSTED


def after_attempt(job: DeliveryJob, outcome: Outcome, delays: tuple[float, ...],
                  origin: Origin) -> list[Produce]:
    status = verdict(job, outcome, delays)
    if status == SUCCESS:
        return [_log(job, AttemptRecord.of(job, outcome, SUCCESS))]
    tried = replace(job, outcomes=(*job.outcomes, outcome))
    rung = next_rung(job.attempt, delays)
    if status == DEAD or rung is None:
        reason = (f"delivery {job.delivery_id} dead-lettered after {len(tried.outcomes)} "
                  f"attempts: {outcome.error}")
        letter = DeadLetter(tried, dead_reason(outcome), outcome.error, outcome.attempted_at)
        return [_dead(letter, origin, reason), _log(job, AttemptRecord.of(job, outcome, DEAD))]
    wait = retry_delay(delays, rung, outcome.retry_after_s)
    due = outcome.attempted_at + outcome.response_time_ms + int(wait * 1000)
    retry = replace(tried, attempt=job.attempt + 1, due_at=due)
    return [
        Produce(RETRY_TOPICS[rung], job.webhook_id, retry.encode(),
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


def latest_due(job: DeliveryJob, delays: tuple[float, ...]) -> int | None:
    """The latest due time a retry of this job can honestly have (epoch ms): its last
    attempt's end plus the longest wait its rung allows, Retry-After's cap. None for a job
    that is no retry."""
    rung = job.attempt - 2  # the rung whose topic a job of this attempt was put on
    if not job.outcomes or not 0 <= rung < len(delays):
        return None
    last = job.outcomes[-1]
    longest = retry_delay(delays, rung, float("inf"))
    return last.attempted_at + last.response_time_ms + int(longest * 1000)


def park_topic(wait_s: float, delays: tuple[float, ...]) -> int | None:
    """The retry topic for a job due `wait_s` from now, by the first of these that fits:

    1. the shortest delay not under the wait, if it passes it by PARK_SLACK_S at most: one
       leg to the due time (held until then), late by that little at most;
    2. the longest delay not past the wait, if it is at least 1/LEG_RATIO of it: the job
       is held that whole delay, in due order with the rest of that topic, so never late
       (and a chain has at most about LEG_RATIO legs per topic: 10 for the worst waits of
       the default ladder, one for most);
    3. the shortest delay not under the wait, held until the due time, which is late only
       behind a head due later there (by less than that delay minus the wait);
    4. the longest delay, for a wait longer than any (only a forged one: see `repark`).

    None if no topic holds (every delay under 1 ms, which `hold_until` counts as none)."""
    held = [i for i, d in enumerate(delays) if d >= _HOLDS_S]
    if not held:
        return None
    beyond = [i for i in held if delays[i] >= wait_s]
    shortest = min(beyond, key=lambda i: delays[i]) if beyond else None
    if shortest is not None and delays[shortest] - wait_s <= PARK_SLACK_S:
        return shortest
    within = [i for i in held if delays[i] <= wait_s]
    if within:
        longest = max(within, key=lambda i: delays[i])
        if delays[longest] * LEG_RATIO >= wait_s:
            return longest
    if shortest is not None:
        return shortest
    return max(held, key=lambda i: delays[i])


def repark(job: DeliveryJob, due: int | None, delays: tuple[float, ...],
           now_ms: int) -> list[Produce]:
    """A retry read from a retry topic before its due time (`due`: its header's): parked
    again, unattempted, with the same due time, on `park_topic`'s topic; or [] if it is due
    and may be attempted now. The due time counts up to `latest_due` only, so a job whose
    header claims more (forged, or written under a longer ladder) waits no longer than an
    honest Retry-After could make it; and nothing is parked where no topic holds."""
    latest = latest_due(job, delays)
    if due is None or latest is None:
        return []
    due = min(due, latest)
    index = park_topic((due - now_ms) / 1000, delays)
    if due <= now_ms or index is None:
        return []
    parked = replace(job, due_at=due)
    return [Produce(RETRY_TOPICS[index], job.webhook_id, parked.encode(),
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
