"""README, "When deliveries fail": replaying dead letters.

- `hookstream dlq replay --since/--until` and POST /v1/webhooks/{id}/replay with
  `since`/`until` re-queue exactly the letters dead within the window. The CLI's help says
  "Dead at or after" / "Dead at or before", and both paths compare with <= on the letter's
  `dead_at` (ms): both ends are included. Each path is tested at each end both ways: a
  letter dead exactly at a bound is replayed, one dead 1 ms outside it is not.
- "a replayed job of a still-disabled webhook is dead-lettered again": the job comes back
  as a new dead letter with the same delivery id, nothing is sent, and once the webhook is
  enabled a replay delivers it: nothing is lost.

Dead letters are made by a disabled webhook: each event's job is dead-lettered at once
(`webhook_disabled`), at a time the test reads from the letter. Events are published one
at a time, each after the previous letter exists and at least 2 ms later, so the letters'
times are distinct and 1 ms on either side of one is free of others.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from streams.core.timeutil import iso_from_ms, now_ms
from streams.delivery.models import WEBHOOK_DISABLED, DeadLetter, DeliveryJob
from streams.kafka import topics

from ..support.api import call
from ..support.kafka import TopicReader, read_to_end
from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

DEPLOYMENT: DeploymentSpec = {"workers": 1, "env": {"HOOKSTREAM_RETRY_DELAYS": "0.5,0.5,0.5"}}


@dataclass(frozen=True)
class Stored:
    """A dead letter where it sits on hookstream.dlq."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def mark(self) -> str:
        """Its key on hookstream.dlq-replayed."""
        return f"{self.partition}:{self.offset}"

    @property
    def delivery_id(self) -> str:
        return self.letter.job.delivery_id

    @property
    def dead_at(self) -> int:
        return self.letter.dead_at


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _letters(messages: list[Any], webhook_id: str) -> list[Stored]:
    """The webhook's letters in the order written (one key: one partition)."""
    return [Stored(m.partition(), m.offset(), DeadLetter.decode(m.value()))
            for m in messages if m.key() == webhook_id.encode()]


def _disabled_webhook(dep: Deployment) -> tuple[str, str, str]:
    workspace, webhook_id = f"ws_{_uid()}", f"wh_{_uid()}"
    path = f"/replay/{webhook_id}"
    dep.create_webhook(webhook_id, workspace, path, ["task.created"], active=False)
    wait_webhook_state(dep, webhook_id, {"active": False})
    return workspace, webhook_id, path


def _dead_letters(dep: Deployment, dlq: TopicReader, workspace: str, webhook_id: str,
                  count: int) -> list[Stored]:
    """`count` events, each dead-lettered before the next is published, 2 ms apart at least."""
    made: list[Stored] = []
    for n in range(count):
        if made:
            later = made[-1].dead_at + 2
            wait_until(lambda: now_ms() >= later, what="the clock to move on")  # noqa: B023
        dep.publish("task.created", workspace, {"id": f"task_{n}"})
        dlq.wait_for(lambda ms: len(_letters(ms, webhook_id)) == n + 1,  # noqa: B023
                     what=f"dead letter {n}")
        made = _letters(dlq.messages, webhook_id)
    assert all(s.letter.reason == WEBHOOK_DISABLED for s in made)
    assert all(b.dead_at - a.dead_at >= 2 for a, b in itertools.pairwise(made))
    return made


def _cli(dep: Deployment, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "streams", *args, "--json"],
                          capture_output=True, text=True, timeout=120, env=dep.env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _api_replay(dep: Deployment, webhook_id: str, body: dict[str, str]) -> dict[str, Any]:
    answer = call(dep.workers[0].port, "POST", f"/v1/webhooks/{webhook_id}/replay",
                  dep.env["HOOKSTREAM_ADMIN_KEY"], body)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.body
    return result


def _marks(dep: Deployment) -> set[str]:
    """Every letter marked replayed (all this module's webhooks)."""
    return {m.key().decode() for m in read_to_end(
        dep.settings.bootstrap_servers, dep.settings.topic(topics.DLQ_REPLAYED))
        if m.key() is not None and m.value() is not None}


def _queued(dep: Deployment, webhook_id: str) -> Counter[str]:
    """How many jobs hookstream.deliveries holds per delivery id of the webhook: one from
    the fan-out, one more for each replay."""
    return Counter(job.delivery_id for job in (
        DeliveryJob.decode(m.value()) for m in read_to_end(
            dep.settings.bootstrap_servers, dep.settings.topic(topics.DELIVERIES))
        if m.key() == webhook_id.encode()))


def test_replay_takes_the_letters_dead_within_since_until_both_ends_included(
        dep: Deployment) -> None:
    workspace, webhook_id, path = _disabled_webhook(dep)
    dlq = dep.reader(topics.DLQ)
    letters = _dead_letters(dep, dlq, workspace, webhook_id, 7)
    at = [s.dead_at for s in letters]

    def iso(ms: int) -> str:
        return iso_from_ms(ms)

    # CLI, since at a letter (taken), until 1 ms before the next (not taken).
    first = _cli(dep, "dlq", "replay", "--webhook", webhook_id,
                 "--since", iso(at[1]), "--until", iso(at[2] - 1))
    assert (first["replayed"], first["already_replayed"], first["delivery_ids"]) == (
        1, 0, [letters[1].delivery_id])
    # CLI, since 1 ms after a letter (not taken), until at a letter (taken).
    second = _cli(dep, "dlq", "replay", "--webhook", webhook_id,
                  "--since", iso(at[2] + 1), "--until", iso(at[3]))
    assert (second["replayed"], second["already_replayed"], second["delivery_ids"]) == (
        1, 0, [letters[3].delivery_id])
    # The API, the same two ways.
    assert _api_replay(dep, webhook_id, {"since": iso(at[4]), "until": iso(at[5] - 1)}) == {
        "replayed": 1, "already_replayed": 0}
    assert _api_replay(dep, webhook_id, {"since": iso(at[5] + 1), "until": iso(at[6])}) == {
        "replayed": 1, "already_replayed": 0}

    # What was replayed, as the topics say: marked, and queued once more as a job.
    taken = [letters[i] for i in (1, 3, 4, 6)]
    left = [letters[i] for i in (0, 2, 5)]
    marks = _marks(dep)
    assert {s.mark for s in taken} <= marks
    assert not {s.mark for s in left} & marks
    queued = _queued(dep, webhook_id)
    assert queued == Counter({s.delivery_id: 2 for s in taken} | {s.delivery_id: 1 for s in left})
    assert not dep.receiver.at(path)


def test_a_replayed_job_of_a_still_disabled_webhook_is_dead_lettered_again(
        dep: Deployment) -> None:
    workspace, webhook_id, path = _disabled_webhook(dep)
    dlq = dep.reader(topics.DLQ)
    originals = _dead_letters(dep, dlq, workspace, webhook_id, 2)
    ids = [s.delivery_id for s in originals]

    # Replayed without enabling: each job is dead-lettered again, same delivery id, unsent.
    assert _api_replay(dep, webhook_id, {}) == {"replayed": 2, "already_replayed": 0}
    dlq.wait_for(lambda ms: len(_letters(ms, webhook_id)) == 4, what="the letters again")
    again = _letters(dlq.messages, webhook_id)[2:]
    assert sorted(s.delivery_id for s in again) == sorted(ids)
    assert all(s.letter.reason == WEBHOOK_DISABLED for s in again)
    assert all(s.offset > originals[-1].offset for s in again)  # new letters, not the old
    assert not dep.receiver.at(path)

    # The new letters are not replayed yet (the old ones are): the next replay takes them.
    listed = subprocess.run([sys.executable, "-m", "streams", "dlq", "list", "--webhook",
                             webhook_id, "--json"], capture_output=True, text=True,
                            timeout=120, env=dep.env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((r["delivery_id"], r["replayed"]) for r in rows) == sorted(
        [(i, True) for i in ids] + [(i, False) for i in ids])

    # Nothing lost: enabled, a replay delivers each of them with its original delivery id.
    dep.command("enable", webhook_id)
    wait_webhook_state(dep, webhook_id, {"active": True})
    assert _api_replay(dep, webhook_id, {}) == {"replayed": 2, "already_replayed": 2}
    dep.receiver.wait_for(lambda _: len(dep.receiver.at(path)) >= 2, what="the deliveries")
    delivered = [r.headers["x-webhook-delivery"] for r in dep.receiver.at(path)]
    assert sorted(delivered) == sorted(ids)
