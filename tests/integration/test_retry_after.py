"""Retry-After and 410 Gone end to end: a real worker, broker and receiver (issue 14).

Retry delays are compressed to seconds (1, 4, 12), so Retry-After: 3 on a first attempt
asks for more than the first rung (1 s) and less than its cap (1 + 4 s): the retry is
parked again when retry.1m's hold ends (streams.delivery.routing.repark), and must still
reach the receiver no sooner than it asked, by the receiver's own clock."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from streams.delivery.models import GONE, RETRYING, SUCCESS, AttemptRecord, DeadLetter
from streams.kafka import topics

from ..support.api import call
from ..support.pipeline import Deployment
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DELAYS = (1.0, 4.0, 12.0)
RETRY_AFTER_S = 3
#: Lateness allowed on a loaded 2-core machine (as tests/integration/test_failure_path.py).
TOLERANCE_S = 1.5

DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_RETRY_DELAYS": ",".join(map(str, DELAYS)),
                                      "HOOKSTREAM_DELIVERY_TIMEOUT": "2"}}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _api_key(dep: Deployment, workspace: str) -> str:
    out = subprocess.run([sys.executable, "-m", "streams", "apikeys", "create", "--workspace",
                          workspace], capture_output=True, text=True, timeout=60, env=dep.env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("key (shown once): ", 1)[1].split()[0]


def _log_of(dep: Deployment, webhook: str, records: list) -> list[AttemptRecord]:
    return [AttemptRecord.decode(m.value()) for m in records if m.key() == webhook.encode()]


def test_retry_after_is_honoured_and_410_disables_the_webhook_at_once(dep: Deployment) -> None:
    ws = f"ws_{_uid()}"
    busy, gone = f"wh_{_uid()}", f"wh_{_uid()}"
    key = _api_key(dep, ws)
    log = dep.reader(topics.DELIVERY_LOG)
    dlq = dep.reader(topics.DLQ)
    port = dep.workers[0].port

    dep.receiver.script[f"/busy/{busy}"] = [(429, {"Retry-After": str(RETRY_AFTER_S)})]
    dep.receiver.status[f"/gone/{gone}"] = 410
    dep.create_webhook(busy, ws, f"/busy/{busy}", ["task.*"])
    dep.create_webhook(gone, ws, f"/gone/{gone}", ["task.*"])
    for webhook in (busy, gone):
        wait_until(lambda w=webhook: call(port, "GET", f"/v1/webhooks/{w}", key)
                   .body.get("active") is True, what=f"{webhook} active")
    dep.publish("task.created", ws, {"id": "t1"})

    # 429 + Retry-After: 3, then 200: the retry no sooner than asked, not much later.
    dep.receiver.wait_for(lambda _: len(dep.receiver.at(f"/busy/{busy}")) >= 2,
                          timeout=30, what="the retry after a 429")
    first, second = (r.at for r in dep.receiver.at(f"/busy/{busy}"))
    # Due times are whole milliseconds (so 10 ms of rounding), on the same clock here.
    assert RETRY_AFTER_S - 0.01 <= second - first <= RETRY_AFTER_S + TOLERANCE_S, (
        second - first)
    print(f"\nretry {second - first:.3f}s after a 429 asking for {RETRY_AFTER_S}s "
          f"(ladder: {DELAYS[0]}s)")
    records = log.wait_for(lambda ms: [r.status for r in _log_of(dep, busy, ms)] == [
        RETRYING, SUCCESS], what="the busy webhook's two outcomes")
    retrying, succeeded = _log_of(dep, busy, records)
    # The history shows when the retry was scheduled: the receiver's wait, not the ladder's.
    assert retrying.next_attempt_at is not None
    assert retrying.next_attempt_at == (retrying.attempted_at + retrying.response_time_ms
                                        + RETRY_AFTER_S * 1000)
    assert (retrying.attempt, succeeded.attempt) == (1, 2)
    assert succeeded.attempted_at >= retrying.next_attempt_at

    # 410 Gone: dead-lettered after its one attempt and the webhook disabled, reason gone.
    shown = wait_until(lambda: (lambda a: a.body if a.body.get("active") is False else None)(
        call(port, "GET", f"/v1/webhooks/{gone}", key)), what="the gone webhook disabled")
    assert shown["disabled_reason"] == GONE
    letters = dlq.wait_for(lambda ms: any(m.key() == gone.encode() for m in ms),
                           what="the gone webhook's dead letter")
    (letter,) = [DeadLetter.decode(m.value()) for m in letters if m.key() == gone.encode()]
    assert letter.reason == GONE
    assert [(o.attempt, o.response_code) for o in letter.job.outcomes] == [(1, 410)]
    assert len(dep.receiver.at(f"/gone/{gone}")) == 1
    assert not any(m.key() == busy.encode() for m in dlq.messages)
