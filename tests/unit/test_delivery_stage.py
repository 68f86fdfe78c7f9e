"""streams.delivery.stage.DeliveryWorker: a job in, one signed POST, its outcome routed.

The receiver is an httpx.MockTransport handed to the worker (DeliveryClient's seam); the
worker runs on the in-memory broker (streams.pipeline.local), in virtual time
(test_stage_loop.run). Most tests call `handle` and read what it returns; the last one
runs the whole stage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from streams.core import catalog, signing
from streams.core.events import decode_event
from streams.core.payload import webhook_body
from streams.core.secretbox import SecretBox, generate_master_key
from streams.core.timeutil import now_ms
from streams.delivery import operations
from streams.delivery.models import (
    ATTEMPTS_EXHAUSTED,
    DEAD,
    DISABLED,
    GONE,
    RETRYING,
    SUCCESS,
    WEBHOOK_DELETED,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    Outcome,
    delivery_id_for,
)
from streams.delivery.routing import DUE_AT_HEADER
from streams.delivery.stage import DeliveryWorker
from streams.kafka.topics import (
    CONTROL,
    DELIVERIES,
    DELIVERY_LOG,
    DLQ,
    INVALID,
    RETRY_TOPICS,
    SUBSCRIPTIONS,
    all_topics,
    domain_topic,
)
from streams.pipeline.local import LocalBroker, NoRebalanceListener
from streams.pipeline.records import Origin, Produce
from streams.settings import Settings
from streams.subscriptions.commands import decode_command
from streams.subscriptions.model import Subscription
from streams.subscriptions.view import SubscriptionsView

from .test_stage_loop import run

#: The settings' own master key is not the one the secrets are sealed under (BOX's), so a
#: worker that ignored the box it was given could not sign.
SETTINGS = Settings(topic_prefix="t.", partitions=2,
                    master_key=generate_master_key("settings"))
BOX = SecretBox.from_env(generate_master_key("given"), Path("/nonexistent"))
SECRET = "whsec_delivery_stage_secret"
SUB = Subscription(id="wh_1", workspace_id="ws_1", url="https://hooks.example.com/in",
                   events=("task.*",), secret=BOX.seal(SECRET), active=True, created_at=0,
                   updated_at=0)
JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
    event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json='{"id":"task_1","name":"Design homepage"}', attempt=1, created_at=0,
    source_topic="t.domain.task", source_partition=1, source_offset=5)


class Receiver:
    """The customer's endpoint: answers `status` with `headers`, keeps every request."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, headers=self.headers,
                              content=b"busy" if self.status >= 300 else b"")


def _view(subs: Iterable[Subscription]) -> SubscriptionsView:
    """A view as a worker holds it once caught up; never started (no Kafka)."""
    view = SubscriptionsView(SETTINGS.bootstrap_servers, SETTINGS.topic(SUBSCRIPTIONS))
    for sub in subs:
        view.index.put(sub)
    view.ready.set()
    return view


def _worker(broker: LocalBroker, receiver: Receiver, subs: Iterable[Subscription],
            box: SecretBox = BOX) -> DeliveryWorker:
    return DeliveryWorker(SETTINGS, _view(subs), box=box,
                          transport=httpx.MockTransport(receiver),
                          consumer_factory=broker.consumer, producer_factory=broker.producer,
                          tail_factory=broker.tail)


def _record(topic: str, value: bytes, offset: int = 7,
            headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=now_ms(),
                          timestamp_type=1, key=b"wh_1", value=value, checksum=None,
                          serialized_key_size=4, serialized_value_size=len(value),
                          headers=headers)


def _deliver(job: DeliveryJob | bytes, status: int = 200, subs: Iterable[Subscription] = (SUB,),
             topic: str = DELIVERIES, box: SecretBox = BOX,
             answer_headers: dict[str, str] | None = None,
             record_headers: tuple[tuple[str, bytes], ...] = (),
             ) -> tuple[list[Produce], Receiver]:
    """What `handle` returns for this job, read from `topic` with `record_headers`, and what
    the receiver (answering `status` with `answer_headers`) saw."""
    receiver = Receiver(status, answer_headers)
    value = job if isinstance(job, bytes) else job.encode()
    record = _record(SETTINGS.topic(topic), value, headers=record_headers)

    async def main() -> list[Produce]:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        worker = _worker(broker, receiver, subs, box)
        await worker.start()  # its loop reads nothing: the record is handed to `handle`
        try:
            returned = await worker.handle(record, Origin(record.topic, 0, record.offset))
            return _produced_by(broker) + returned
        finally:
            await worker.stop()

    return run(main), receiver


def _produced_by(broker: LocalBroker) -> list[Produce]:
    """What a handler produced itself (an attempt's outcome: its retry or dead letter,
    then its log record), in the order it landed, as the Produce it was."""
    outputs = {SETTINGS.topic(t) for t in (DELIVERY_LOG, DLQ, *RETRY_TOPICS)}
    landed = [r for r in broker.appended if r.topic in outputs]
    return [Produce(r.topic.removeprefix(SETTINGS.topic_prefix), (r.key or b"").decode(),
                    r.value or b"", tuple(r.headers)) for r in landed]


def _log(produce: Produce) -> AttemptRecord:
    assert (produce.topic, produce.key) == (DELIVERY_LOG, "wh_1")
    return AttemptRecord.decode(produce.value)


def test_a_2xx_is_a_success_and_the_request_is_signed() -> None:
    produced, receiver = _deliver(JOB, status=204)
    (log,) = produced
    record = _log(log)
    assert (record.delivery_id, record.attempt, record.status, record.response_code,
            record.error, record.next_attempt_at) == (JOB.delivery_id, 1, SUCCESS, 204, None,
                                                      None)
    (request,) = receiver.requests
    assert (request.method, str(request.url)) == ("POST", SUB.url)
    assert request.content == webhook_body(JOB.event_id, JOB.event_type, JOB.event_timestamp,
                                           SUB.id, JOB.data_json)
    headers = request.headers
    assert (headers["X-Webhook-Delivery"], headers["X-Webhook-Event"],
            headers["X-Webhook-ID"]) == (JOB.delivery_id, "task.created", "wh_1")
    # Signed with the secret the box given opens, not with its sealed form.
    assert signing.verify(request.content, headers["X-Webhook-Signature"], SECRET)
    assert not signing.verify(request.content, headers["X-Webhook-Signature"], SUB.secret)


def test_a_5xx_goes_to_the_first_retry_topic_due_after_its_delay() -> None:
    produced, receiver = _deliver(JOB, status=503)
    retry, log = produced
    assert len(receiver.requests) == 1
    record = _log(log)
    assert (record.status, record.attempt, record.response_code, record.error) == (
        RETRYING, 1, 503, "HTTP 503: busy")
    due = record.attempted_at + record.response_time_ms + int(SETTINGS.retry_delays[0] * 1000)
    assert record.next_attempt_at == due
    assert (retry.topic, retry.key, retry.headers) == (
        RETRY_TOPICS[0], "wh_1", ((DUE_AT_HEADER, str(due).encode()),))
    assert DeliveryJob.decode(retry.value) == replace(
        JOB, attempt=2, due_at=due, outcomes=(Outcome(1, record.attempted_at, 503,
                                                      record.response_time_ms,
                                                      "HTTP 503: busy"),))


def _retried(status: int, retry_after: str | None) -> tuple[int, int, Produce]:
    """A first attempt answered `status` (with Retry-After if given) must be retried: the
    retry's due time, the earliest it can be by the ladder (from the attempt's end), and
    the retry record."""
    produced, receiver = _deliver(
        JOB, status=status,
        answer_headers=None if retry_after is None else {"Retry-After": retry_after})
    retry, log = produced
    assert len(receiver.requests) == 1
    record = _log(log)
    assert (record.status, record.attempt, record.response_code) == (RETRYING, 1, status)
    assert (retry.topic, retry.key) == (RETRY_TOPICS[0], "wh_1")
    (due_header,) = [v for k, v in retry.headers if k == DUE_AT_HEADER]
    due = int(due_header)
    # The one due time: on the record's header, in the job, and in the log's history.
    assert DeliveryJob.decode(retry.value).due_at == due == record.next_attempt_at
    assert DeliveryJob.decode(retry.value).attempt == 2
    return due, record.attempted_at + record.response_time_ms, retry


def test_a_429s_retry_after_in_seconds_sets_the_retrys_due_time() -> None:
    due, answered, _ = _retried(429, "120")
    assert due == answered + 120_000


def test_a_retry_after_past_the_cap_is_cut_to_this_rung_plus_the_next() -> None:
    first, second = SETTINGS.retry_delays[:2]
    due, answered, _ = _retried(503, "86400000")
    assert due == answered + int((first + second) * 1000)


def test_a_retry_after_shorter_than_the_ladder_does_not_hasten_the_retry() -> None:
    due, answered, _ = _retried(429, "1")
    assert due == answered + int(SETTINGS.retry_delays[0] * 1000)


def test_a_retry_after_http_date_is_read_from_when_the_answer_came() -> None:
    until = now_ms() // 1000 + 200  # within the cap (360 s) and past the ladder (60 s)
    due, answered, _ = _retried(503, formatdate(until, usegmt=True))
    # Whole seconds from the receiver; never early, late by the attempt's own bookkeeping.
    assert until * 1000 - 2 <= due <= until * 1000 + 1000
    assert due - answered > SETTINGS.retry_delays[0] * 1000


def test_a_503_without_retry_after_keeps_the_ladder() -> None:
    due, answered, _ = _retried(503, None)
    assert due == answered + int(SETTINGS.retry_delays[0] * 1000)


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_retry_after_on_another_status_is_ignored(status: int) -> None:
    due, answered, _ = _retried(status, "120")
    assert due == answered + int(SETTINGS.retry_delays[0] * 1000)


def test_a_410_is_dead_lettered_at_once_with_reason_gone() -> None:
    produced, receiver = _deliver(JOB, status=410, answer_headers={"Retry-After": "5"})
    dead, log = produced
    assert len(receiver.requests) == 1
    record = _log(log)
    assert (record.status, record.attempt, record.response_code, record.next_attempt_at) == (
        DEAD, 1, 410, None)
    assert (dead.topic, dead.key) == (DLQ, "wh_1")
    letter = DeadLetter.decode(dead.value)
    assert (letter.reason, [o.response_code for o in letter.job.outcomes]) == (GONE, [410])
    assert dict(dead.headers)["hookstream-reason"] == b"gone"


def _waiting_retry(due_in_ms: int, answered_ago_ms: int) -> tuple[DeliveryJob, int]:
    """The retry of a first attempt answered `answered_ago_ms` ago, due in `due_in_ms`."""
    answered = now_ms() - answered_ago_ms
    due = now_ms() + due_in_ms
    return replace(JOB, attempt=2, due_at=due,
                   outcomes=(Outcome(1, answered, 429, 0, "HTTP 429: busy"),)), due


def test_a_retry_read_before_the_time_its_receiver_asked_for_is_parked_again() -> None:
    """A 429 asked for 120 s; retry.1m held it its 60 s; the rest is waited on a topic."""
    job, due = _waiting_retry(60_000, 60_000)
    produced, receiver = _deliver(job, topic=RETRY_TOPICS[0],
                                  record_headers=((DUE_AT_HEADER, str(due).encode()),))
    (parked,) = produced
    assert receiver.requests == []
    # 60 s left, a hair under retry.1m's delay by now: held there until exactly its due time.
    assert (parked.topic, parked.headers) == (RETRY_TOPICS[0],
                                              ((DUE_AT_HEADER, str(due).encode()),))
    assert DeliveryJob.decode(parked.value) == job  # unattempted: the same attempt and due


def test_a_due_retry_is_attempted_and_a_forged_wait_counts_only_to_the_cap() -> None:
    job, due = _waiting_retry(-1, 61_000)
    produced, receiver = _deliver(job, topic=RETRY_TOPICS[0],
                                  record_headers=((DUE_AT_HEADER, str(due).encode()),))
    assert len(receiver.requests) == 1 and _log(produced[-1]).status == SUCCESS
    # Due in a year, from an attempt answered an hour ago: the cap (6 min) is long past.
    job, due = _waiting_retry(365 * 86_400_000, 3_600_000)
    produced, receiver = _deliver(job, topic=RETRY_TOPICS[0],
                                  record_headers=((DUE_AT_HEADER, str(due).encode()),))
    assert len(receiver.requests) == 1 and _log(produced[-1]).status == SUCCESS


def test_a_failed_last_attempt_is_dead_lettered_and_logged() -> None:
    tried = tuple(Outcome(n, n, 503, 1, "HTTP 503") for n in (1, 2, 3))
    last = replace(JOB, attempt=4, outcomes=tried)
    produced, receiver = _deliver(last, status=500, topic=RETRY_TOPICS[2])
    dead, log = produced
    assert len(receiver.requests) == 1
    record = _log(log)
    assert (record.status, record.attempt, record.response_code) == (DEAD, 4, 500)
    assert (dead.topic, dead.key) == (DLQ, "wh_1")
    letter = DeadLetter.decode(dead.value)
    assert (letter.reason, len(letter.job.outcomes), letter.job.outcomes[-1].response_code) == (
        ATTEMPTS_EXHAUSTED, 4, 500)
    headers = dict(dead.headers)
    assert (headers["hookstream-reason"], headers["hookstream-attempts"],
            headers["hookstream-last-topic"]) == (
        b"attempts_exhausted", b"4", SETTINGS.topic(RETRY_TOPICS[2]).encode())


def test_a_disabled_webhooks_job_is_dead_lettered_unattempted() -> None:
    produced, receiver = _deliver(JOB, subs=[replace(SUB, active=False)])
    dead, log = produced
    assert receiver.requests == []
    assert DeadLetter.decode(dead.value).reason == WEBHOOK_DISABLED
    assert (_log(log).status, _log(log).response_code) == (DISABLED, None)


def test_a_deleted_webhooks_job_is_dead_lettered_unattempted() -> None:
    produced, receiver = _deliver(JOB, subs=[])
    dead, log = produced
    assert receiver.requests == []
    assert DeadLetter.decode(dead.value).reason == WEBHOOK_DELETED
    assert _log(log).status == DEAD


def test_a_job_that_does_not_decode_is_quarantined() -> None:
    (copy,) = _deliver(b"\x00not a job")[0]
    assert (copy.topic, copy.value) == (INVALID, b"\x00not a job")
    assert dict(copy.headers)["hookstream-error"].startswith(b"invalid delivery job: ")


def test_the_stage_delivers_logs_and_commits() -> None:
    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        receiver = Receiver(200)
        worker = _worker(broker, receiver, [SUB])
        await worker.start()
        deliveries = SETTINGS.topic(DELIVERIES)
        job = broker.append(deliveries, JOB.encode(), key=b"wh_1")
        reader = broker.consumer(SETTINGS, "reader", 0)
        reader.subscribe([SETTINGS.topic(DELIVERY_LOG)], listener=NoRebalanceListener())
        await reader.start()
        logged = [r for rs in (await reader.getmany(timeout_ms=30_000)).values() for r in rs]
        await worker.stop()

        assert len(receiver.requests) == 1
        assert [AttemptRecord.decode(r.value).status for r in logged] == [SUCCESS]
        tp = TopicPartition(deliveries, job.partition)
        assert broker.committed(f"t.{DeliveryWorker.group}", tp) == job.offset + 1
        await reader.stop()

    run(main)


def test_a_receiver_that_hangs_is_a_timeout() -> None:
    """The attempt's timeout is the loop's: a hanging receiver costs virtual seconds."""
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def main() -> list[Produce]:
        broker = LocalBroker()
        broker.create_topics(all_topics(SETTINGS))
        worker = DeliveryWorker(SETTINGS, _view([SUB]), box=BOX,
                                transport=httpx.MockTransport(hang),
                                consumer_factory=broker.consumer,
                                producer_factory=broker.producer, tail_factory=broker.tail)
        await worker.start()
        try:
            record = _record(SETTINGS.topic(DELIVERIES), JOB.encode())
            returned = await worker.handle(record, Origin(record.topic, 0, record.offset))
            return _produced_by(broker) + returned
        finally:
            await worker.stop()

    _, log = run(main)
    assert _log(log).error == f"timed out after {SETTINGS.delivery_timeout:g}s"


def _event_job(n: int, event_type: str = "task.created") -> DeliveryJob:
    data = ('{"id":"t"}' if not catalog.is_operational(event_type) else
            '{"webhook_id":"wh_other","url":"https://x.example/"}')
    return replace(JOB, delivery_id=delivery_id_for(f"evt_{n}", "wh_1"), event_id=f"evt_{n}",
                   event_type=event_type, data_json=data)


def _news(broker: LocalBroker, settings: Settings) -> list[tuple[str, object]]:
    """What the stage said about its webhooks so far: (event type, consecutive failures) of
    each operational event, ("disable", reason) of each control command."""
    said: list[tuple[str, object]] = []
    for r in broker.appended:
        if r.topic == settings.topic(domain_topic("webhook")):
            event = decode_event(r.value or b"", topic=r.topic, partition=0, offset=0)
            said.append((event.type, event.data["consecutive_failures"]))
        elif r.topic == settings.topic(CONTROL):
            command = decode_command(r.value or b"")
            said.append((command.op, command.reason))
    return said


def test_consecutive_failures_are_news_at_50_and_90_percent_and_disable_at_the_limit() -> None:
    """Limit 10: the 5th and 9th failures in a row publish webhook.failing (with the last
    error), the 10th disables; a success starts the count again; operational events' own
    failures do not count."""
    settings = replace(SETTINGS, failure_limit=10)

    async def main() -> None:
        broker = LocalBroker()
        broker.create_topics(all_topics(settings))
        receiver = Receiver(503)
        worker = DeliveryWorker(settings, _view([SUB]), box=BOX,
                                transport=httpx.MockTransport(receiver),
                                consumer_factory=broker.consumer,
                                producer_factory=broker.producer, tail_factory=broker.tail)
        await worker.start()
        offsets = iter(range(1000))

        async def attempt(job: DeliveryJob) -> None:
            record = _record(settings.topic(DELIVERIES), job.encode(), offset=next(offsets))
            assert await worker.handle(record, Origin(record.topic, 0, record.offset)) == []

        try:
            for n in range(4):
                await attempt(_event_job(n))
            receiver.status = 200
            await attempt(_event_job(4))  # a success: the four before are forgotten
            receiver.status = 503
            for n in range(5, 9):
                await attempt(_event_job(n))
            for n in range(9, 12):  # others' news failing here: not counted
                await attempt(_event_job(n, "webhook.failing"))
            assert _news(broker, settings) == []
            await attempt(_event_job(12))  # the 5th failure in a row
            assert _news(broker, settings) == [("webhook.failing", 5)]
            for n in range(13, 25):
                await attempt(_event_job(n))
            reason = operations.limit_reason(10)
            assert _news(broker, settings) == [
                ("webhook.failing", 5), ("webhook.failing", 9), ("disable", reason),
                ("webhook.disabled", 10)]
            assert len(receiver.requests) == 4 + 1 + 4 + 3 + 1 + 12
        finally:
            await worker.stop()

    run(main)
