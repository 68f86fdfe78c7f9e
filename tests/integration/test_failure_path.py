"""Retries (delays compressed to seconds), dead letters, auto-disable, enable and replay."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Producer

from streams.core.schemas import OPERATIONAL_EVENT, registry
from streams.core.timeutil import now_ms
from streams.delivery.models import (
    ATTEMPTS_EXHAUSTED,
    WEBHOOK_DISABLED,
    AttemptRecord,
    DeadLetter,
    DeliveryJob,
    delivery_id_for,
)
from streams.delivery.routing import DUE_AT_HEADER
from streams.kafka import topics

from ..support.pipeline import Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DELAYS = (1.0, 2.0, 12.0)
#: Lateness allowed on a loaded 2-core machine; the benchmark measures the real figure.
TOLERANCE_S = 1.5


DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_RETRY_DELAYS": ",".join(str(d) for d in DELAYS),
                      "HOOKSTREAM_DELIVERY_TIMEOUT": "2"}}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _ids(requests: list) -> list[str]:
    return [json.loads(r.body)["id"] for r in requests]


def _cli(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                          text=True, timeout=120, env=dep.env)


@pytest.mark.exclusive  # gaps between attempts within TOLERANCE_S
def test_always_failing_endpoint_is_dead_lettered_disabled_then_replayed(
        dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    path = f"/fail/{wh}"
    dep.receiver.status[path] = 500
    dep.create_webhook(wh, ws, path, ["task.*"])
    wait_webhook_state(dep, wh, {"active": True})
    dlq = dep.reader(topics.DLQ)
    operations = dep.reader(topics.OPERATIONS)
    first = dep.publish("task.created", ws, {"id": "t1"})

    # First attempt plus three retries, each no earlier than its delay and not much later.
    dep.receiver.wait_for(lambda _: len(dep.receiver.at(path)) >= 4, timeout=40,
                          what="four attempts")
    times = [r.at for r in dep.receiver.at(path)]
    for gap, delay in zip([b - a for a, b in itertools.pairwise(times)], DELAYS,
                          strict=True):
        # Never early: due times are whole milliseconds, so allow their rounding (10 ms).
        assert delay - 0.01 <= gap <= delay + TOLERANCE_S, (gap, delay)
    print(f"\nretry gaps {[round(b - a, 3) for a, b in itertools.pairwise(times)]} "
          f"for delays {DELAYS}")

    letters = dlq.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms),
                           what="the dead letter")
    message = next(m for m in letters if m.key() == wh.encode())
    letter = DeadLetter.decode(message.value())
    assert letter.reason == ATTEMPTS_EXHAUSTED
    assert letter.job.delivery_id == delivery_id_for(first, wh)
    assert [o.attempt for o in letter.job.outcomes] == [1, 2, 3, 4]
    assert all(o.response_code == 500 and o.error for o in letter.job.outcomes)
    headers = {k: v.decode() for k, v in message.headers()}
    assert headers["hookstream-reason"] == ATTEMPTS_EXHAUSTED
    assert headers["hookstream-original-topic"] == dep.settings.topic("domain.task")
    assert headers["hookstream-last-topic"] == dep.settings.topic("hookstream.retry.30m")
    assert int(headers["hookstream-original-offset"]) >= 0
    assert "HTTP 500" in headers["hookstream-error"]

    reason = f"auto: delivery {letter.job.delivery_id} dead-lettered after 4 attempts"
    wait_webhook_state(dep, wh, {"active": False, "disabled_reason": reason})
    ops = operations.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms),
                              what="webhook.disabled")
    op = registry().decode(OPERATIONAL_EVENT, next(m for m in ops if m.key() == wh.encode())
                           .value())
    assert (op["type"], op["workspace_id"], op["reason"]) == ("webhook.disabled", ws, reason)

    # While disabled: nothing sent, everything dead-lettered.
    later = [dep.publish("task.updated", ws, {"id": f"t{i}"}) for i in (2, 3)]
    dlq.wait_for(lambda ms: sum(1 for m in ms if m.key() == wh.encode()) >= 3,
                 what="two webhook_disabled letters")
    reasons = [DeadLetter.decode(m.value()).reason for m in dlq.messages
               if m.key() == wh.encode()]
    assert reasons == [ATTEMPTS_EXHAUSTED, WEBHOOK_DISABLED, WEBHOOK_DISABLED]
    assert len(dep.receiver.at(path)) == 4

    listed = _cli(dep, "dlq", "list", "--webhook", wh, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {row["event_id"] for row in json.loads(listed.stdout)} == {first, *later}

    # Recovery: fix, enable, replay: every missed event arrives with its original id.
    dep.receiver.status[path] = 200
    dep.command("enable", wh)
    wait_webhook_state(dep, wh, {"active": True, "disabled_reason": None})
    replayed = _cli(dep, "dlq", "replay", "--webhook", wh)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 3 dead letter(s)" in replayed.stdout
    dep.receiver.wait_for(lambda _: {first, *later} <= {
        _ids([r])[0] for r in dep.receiver.at(path)[4:]}, what="replayed deliveries")
    for request in dep.receiver.at(path)[4:]:
        event_id = json.loads(request.body)["id"]
        assert request.headers["x-webhook-delivery"] == delivery_id_for(event_id, wh)

    again = _cli(dep, "dlq", "replay", "--webhook", wh)
    assert again.returncode == 0, again.stderr
    assert "replayed 0 dead letter(s)" in again.stdout
    marker = dep.publish("task.updated", ws, {"id": "marker"})
    dep.receiver.wait_for(lambda _: marker in _ids(dep.receiver.at(path)), what="marker")
    after_fix = _ids(dep.receiver.at(path)[4:])
    assert sorted(after_fix) == sorted([first, *later, marker])


def test_endpoint_failing_twice_then_succeeding_gets_exactly_three_attempts(
        dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    path = f"/flaky/{wh}"
    dep.receiver.fail_first[path] = 2
    dep.create_webhook(wh, ws, path, ["comment.created"])
    wait_webhook_state(dep, wh, {"active": True})
    log = dep.reader(topics.DELIVERY_LOG)
    event_id = dep.publish("comment.created", ws, {"id": "c1"})

    def mine(messages: list) -> list[AttemptRecord]:
        return [r for r in (AttemptRecord.decode(m.value()) for m in messages)
                if r.webhook_id == wh]

    log.wait_for(lambda ms: any(r.status == "success" for r in mine(ms)), timeout=30,
                 what="success")
    records = mine(log.messages)
    assert [(r.attempt, r.status) for r in records] == [
        (1, "retrying"), (2, "retrying"), (3, "success")]
    assert all(r.delivery_id == delivery_id_for(event_id, wh) for r in records)
    assert len(dep.receiver.at(path)) == 3
    wait_webhook_state(dep, wh, {"active": True})
    dlq = dep.reader(topics.DLQ)
    dlq.poll(1.0)
    assert not [m for m in dlq.messages if m.key() == wh.encode()]


def _job(wh: str, ws: str, due_at: int, attempt: int = 2) -> DeliveryJob:
    event_id = f"evt_{_uid()}"
    return DeliveryJob(
        delivery_id=delivery_id_for(event_id, wh), webhook_id=wh, workspace_id=ws,
        event_id=event_id, event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
        data_json='{"id":"t"}', attempt=attempt, created_at=now_ms(), due_at=due_at)


@pytest.mark.exclusive  # a held retry sent within TOLERANCE_S of its due time
def test_a_waiting_retry_partition_holds_up_nothing_else(dep: Deployment) -> None:
    """One retry.30m partition holds a job due in 10 s (within that topic's delay); another
    partition's due job, and new events on the main topic, are delivered meanwhile; the held
    job waits its turn."""
    ws = f"ws_{_uid()}"
    held_wh, due_wh, live_wh = (f"wh_{n}_{_uid()}" for n in ("held", "due", "live"))
    for wh in (held_wh, due_wh, live_wh):
        # Only the live webhook wants new events; the others get only the retry jobs.
        dep.create_webhook(wh, ws, f"/p/{wh}", ["task.*"] if wh == live_wh else ["user.removed"])
        wait_webhook_state(dep, wh, {"active": True})
    rebalances_before = dep.workers[0].log_text().count("Revoking previously assigned")
    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers})
    retry_topic = dep.settings.topic(topics.RETRY_TOPICS[2])
    held_due = now_ms() + 10_000
    held = _job(held_wh, ws, held_due, attempt=4)
    producer.produce(retry_topic, held.encode(), held_wh.encode(), partition=0,
                     headers=[(DUE_AT_HEADER, str(held_due).encode())])
    producer.flush(10)
    due = _job(due_wh, ws, now_ms(), attempt=4)
    producer.produce(retry_topic, due.encode(), due_wh.encode(), partition=1,
                     headers=[(DUE_AT_HEADER, str(due.due_at).encode())])
    producer.flush(10)
    live = dep.publish("task.created", ws, {"id": "live"})

    dep.receiver.wait_for(lambda _: bool(dep.receiver.at(f"/p/{due_wh}"))
                          and live in _ids(dep.receiver.at(f"/p/{live_wh}")),
                          timeout=10, what="the due retry and the live event")
    assert not dep.receiver.at(f"/p/{held_wh}")
    dep.receiver.wait_for(lambda _: bool(dep.receiver.at(f"/p/{held_wh}")), timeout=30,
                          what="the held retry")
    (request,) = dep.receiver.at(f"/p/{held_wh}")
    assert json.loads(request.body)["id"] == held.event_id
    lateness = request.at - held_due / 1000
    assert 0 <= lateness <= TOLERANCE_S, lateness
    print(f"\nheld retry lateness {lateness * 1000:.0f} ms after a 10 s wait")
    # The 10 s wait cost no group membership: no rebalance happened meanwhile.
    assert dep.workers[0].log_text().count("Revoking previously assigned") == rebalances_before


def test_bad_jobs_on_delivery_topics_are_quarantined(dep: Deployment) -> None:
    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers})
    garbage = b"\xc3\x01" + os.urandom(12)
    for name in (topics.DELIVERIES, topics.RETRY_TOPICS[1]):
        producer.produce(dep.settings.topic(name), garbage, b"wh_garbage")
    producer.flush(10)
    invalid = dep.reader(topics.INVALID)
    found = invalid.wait_for(lambda ms: sum(1 for m in ms if m.value() == garbage) >= 2,
                             what="quarantined jobs")
    sources = {dict(m.headers())["hookstream-source-topic"].decode() for m in found
               if m.value() == garbage}
    assert sources == {dep.settings.topic(topics.DELIVERIES),
                       dep.settings.topic(topics.RETRY_TOPICS[1])}


def test_pending_retry_of_a_disabled_webhook_is_dead_lettered_not_sent(dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    dep.create_webhook(wh, ws, f"/off/{wh}", ["user.removed"])
    wait_webhook_state(dep, wh, {"active": True})
    dep.command("disable", wh, reason="maintenance")
    wait_webhook_state(dep, wh, {"active": False})
    job = _job(wh, ws, now_ms() + 1000)
    producer = Producer({"bootstrap.servers": dep.settings.bootstrap_servers})
    producer.produce(dep.settings.topic(topics.RETRY_TOPICS[2]), job.encode(), wh.encode(),
                     headers=[(DUE_AT_HEADER, str(job.due_at).encode())])
    assert producer.flush(10) == 0
    dlq = dep.reader(topics.DLQ)
    found = dlq.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms),
                         what="the held retry dead-lettered")
    letter = DeadLetter.decode(next(m for m in found if m.key() == wh.encode()).value())
    assert (letter.reason, letter.job.delivery_id) == (WEBHOOK_DISABLED, job.delivery_id)
    assert letter.dead_at >= (job.due_at or 0)  # it waited for its due time first
    assert not dep.receiver.at(f"/off/{wh}")


def test_a_redirect_is_a_failure_and_is_not_followed(dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    path = f"/moved/{wh}"
    dep.receiver.status[path] = 302
    dep.create_webhook(wh, ws, path, ["project.created"])
    wait_webhook_state(dep, wh, {"active": True})
    log = dep.reader(topics.DELIVERY_LOG)
    dep.publish("project.created", ws, {"id": "p1"})
    found = log.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms), what="attempt")
    record = AttemptRecord.decode(next(m for m in found if m.key() == wh.encode()).value())
    assert (record.status, record.response_code) == ("retrying", 302)
    # One request per attempt (retries come a second apart here, so there may be more than
    # one by now): every request the receiver got is logged as an attempt that got a 302.
    requests = len(dep.receiver.at(path))
    attempts = [AttemptRecord.decode(m.value()) for m in log.wait_for(
        lambda ms: sum(m.key() == wh.encode() for m in ms) >= requests,
        what="an attempt logged for each request") if m.key() == wh.encode()]
    assert [a.response_code for a in attempts][:requests] == [302] * requests
    assert not dep.receiver.at(path + "/followed")
