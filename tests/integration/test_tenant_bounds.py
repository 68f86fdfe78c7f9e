"""Tenants are bounded by settings: webhooks per workspace, idempotency keys, dead-letter
listings that page one workspace's letters. (Secrets at rest: test_secrets_at_rest.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from streams.core.signing import verify
from streams.delivery.models import DeadLetter
from streams.kafka import topics
from streams.subscriptions.commands import Command

from ..support.api import Answer, call
from ..support.pipeline import Deployment
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

MAX_WEBHOOKS = 4
LISTED = 12


def _key(dep: Deployment, workspace: str) -> str:
    out = subprocess.run([sys.executable, "-m", "streams", "apikeys", "create", "--workspace",
                          workspace], capture_output=True, text=True, timeout=60, env=dep.env)
    assert out.returncode == 0, out.stderr
    key = out.stdout.split("key (shown once): ", 1)[1].split()[0]
    wait_until(lambda: call(dep.workers[0].port, "GET", "/v1/webhooks", key).status == 200,
               what="the new key known")
    return key


DEPLOYMENT: DeploymentSpec = {"env": {"HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE": str(MAX_WEBHOOKS),
                      "HOOKSTREAM_DEAD_LETTERS_LISTED": str(LISTED)}}


def _on(dep: Deployment, method: str, path: str, key: str, body: object = None,
        headers: dict[str, str] | None = None) -> Answer:
    return call(dep.workers[0].port, method, path, key, body, headers=headers)


def _create(dep: Deployment, key: str, **fields: object) -> Answer:
    return _on(dep, "POST", "/v1/webhooks", key, {
        "url": dep.receiver.url(f"/b/{uuid.uuid4().hex[:6]}"), "events": ["task.created"],
        **fields})


def test_a_workspace_has_at_most_its_webhooks(dep: Deployment) -> None:
    key = _key(dep, "ws_full")
    made = [_create(dep, key) for _ in range(MAX_WEBHOOKS)]
    assert [a.status for a in made] == [201] * MAX_WEBHOOKS
    refused = _create(dep, key)
    assert refused.status == 409, refused.body
    assert refused.body["error"]["code"] == "limit_reached"
    assert f"({MAX_WEBHOOKS})" in refused.body["error"]["message"]
    # A create sent straight to the control topic is held to the same bound.
    direct = f"wh_direct_{uuid.uuid4().hex[:6]}"
    dep.command("create", direct, workspace_id="ws_full", webhook={
        "url": dep.receiver.url("/direct"), "events": ["task.created"]})
    invalid = dep.reader(topics.INVALID)
    (copy,) = [m for m in invalid.wait_for(
        lambda ms: any(m.key() == direct.encode() for m in ms), what="the create refused")
        if m.key() == direct.encode()]
    assert f"the most it may have ({MAX_WEBHOOKS})" in dict(copy.headers())[
        "hookstream-error"].decode()
    # Another workspace is not affected; a deletion makes room again.
    assert _create(dep, _key(dep, "ws_other")).status == 201
    gone = _on(dep, "DELETE", f"/v1/webhooks/{made[0].body['id']}", key)
    assert gone.status == 204
    assert _create(dep, key).status == 201


def test_creates_at_once_stop_at_the_bound(dep: Deployment) -> None:
    """Creates sent together each saw room before any of them landed: 20 at once with room
    for 9 made 11 webhooks, and the ones the control agent refused waited 10 s for a 504."""
    key = _key(dep, "ws_burst")
    with ThreadPoolExecutor(3 * MAX_WEBHOOKS) as pool:
        answers = list(pool.map(lambda _: _create(dep, key), range(3 * MAX_WEBHOOKS)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] * MAX_WEBHOOKS + [409] * (2 * MAX_WEBHOOKS), statuses
    listed = _on(dep, "GET", "/v1/webhooks?limit=100", key).body["data"]
    assert len(listed) == MAX_WEBHOOKS
    # Straight to the control topic, back to back: the agent counts what it applied
    # before its view reads it back.
    dep.command("delete", listed[0]["id"])
    wait_until(lambda: len(_on(dep, "GET", "/v1/webhooks?limit=100", key).body["data"])
               == MAX_WEBHOOKS - 1, what="the delete applied")
    direct = [f"wh_burst_{n}_{uuid.uuid4().hex[:6]}" for n in range(3)]
    for webhook_id in direct:
        dep.publisher.send_command(Command(
            op="create", webhook_id=webhook_id, workspace_id="ws_burst",
            webhook={"url": dep.receiver.url("/burst"), "events": ["task.created"]}))
    dep.publisher.flush()
    invalid = dep.reader(topics.INVALID)
    refused = invalid.wait_for(
        lambda ms: sum(m.key() in {w.encode() for w in direct} for m in ms) >= 2,
        what="two of the creates refused")
    assert sum(m.key() in {w.encode() for w in direct} for m in refused) == 2
    wait_until(lambda: len(_on(dep, "GET", "/v1/webhooks?limit=100", key).body["data"])
               == MAX_WEBHOOKS, what="the third applied")


def test_a_webhook_is_tested_once_at_a_time(dep: Deployment) -> None:
    """Each test is a real request to the tenant's endpoint, outside its rate limit: 40 at
    once made 40 requests in 0.2 s."""
    key = _key(dep, "ws_tests")
    path = f"/held-test/{uuid.uuid4().hex[:6]}"
    released = dep.receiver.hold[path] = threading.Event()  # the endpoint hangs until let go
    hook = _on(dep, "POST", "/v1/webhooks", key, {"url": dep.receiver.url(path),
                                                   "events": ["task.created"]}).body["id"]
    test = f"/v1/webhooks/{hook}/test"
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(_on, dep, "POST", test, key)
        wait_until(lambda: dep.receiver.in_flight.get("held-test") == 1,
                   what="the first test at the endpoint")
        others = list(pool.map(lambda _: _on(dep, "POST", test, key), range(7)))
        released.set()
        assert first.result().status == 200, first.result()
    assert [a.status for a in others] == [429] * 7, others
    for refused in others:
        assert refused.body["error"]["code"] == "too_many_requests"
        assert int(refused.headers["Retry-After"]) >= 1
    assert len(dep.receiver.at(path)) == 1
    assert _on(dep, "POST", test, key).status == 200  # its turn again


def test_idempotent_answers_are_given_again(dep: Deployment) -> None:
    """A create or rotate sent again with its Idempotency-Key gets the first answer, secret
    included, and changes nothing (that the remembered answer rests sealed is checked by
    tests/integration/test_secrets_at_rest.py)."""
    key = _key(dep, "ws_idem")
    headers = {"Idempotency-Key": f"create-{uuid.uuid4().hex}"}
    body = {"url": dep.receiver.url("/idem"), "events": ["task.created"]}
    created = _on(dep, "POST", "/v1/webhooks", key, body, headers)
    again = _on(dep, "POST", "/v1/webhooks", key, body, headers)
    assert created.status == again.status == 201
    assert again.body == created.body  # the same webhook, the same secret, shown again
    listed = _on(dep, "GET", "/v1/webhooks?limit=100", key).body["data"]
    assert [w["id"] for w in listed] == [created.body["id"]]
    rotate_headers = {"Idempotency-Key": f"rotate-{uuid.uuid4().hex}"}
    path = f"/v1/webhooks/{created.body['id']}/rotate-secret"
    rotated = _on(dep, "POST", path, key, None, rotate_headers)
    assert rotated.status == 200 and rotated.body["secret"] != created.body["secret"]
    assert _on(dep, "POST", path, key, None, rotate_headers).body == rotated.body
    # Rotated once, not twice: a delivery is signed with that secret and the first.
    dep.publish("task.created", "ws_idem", {"id": "t_idem"})
    dep.receiver.wait_for(lambda _: bool(dep.receiver.at("/idem")), what="the delivery")
    (delivery,) = dep.receiver.at("/idem")
    assert verify(delivery.body, delivery.headers["x-webhook-signature"],
                  rotated.body["secret"])
    assert verify(delivery.body, delivery.headers["x-webhook-signature-previous"],
                  created.body["secret"])


def test_a_used_idempotency_key_stands_for_its_own_request_only(dep: Deployment) -> None:
    """The same key on another route or with another body got the first answer back: a
    rotate under a create's key answered with the created webhook and its secret, and
    rotated nothing."""
    key = _key(dep, "ws_idem_other")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    created = _on(dep, "POST", "/v1/webhooks", key,
                  {"url": dep.receiver.url("/io"), "events": ["task.created"]}, headers)
    assert created.status == 201
    hook = created.body["id"]
    for method, path, body in [
            ("POST", f"/v1/webhooks/{hook}/rotate-secret", None),
            ("POST", f"/v1/webhooks/{hook}/disable", {"reason": "maintenance"}),
            ("POST", "/v1/webhooks", {"url": dep.receiver.url("/io2"), "events": ["*"]})]:
        reused = _on(dep, method, path, key, body, headers)
        assert reused.status == 422, (path, reused.body)
        assert reused.body["error"]["code"] == "idempotency_key_reused"
        assert reused.body["error"]["field"] == "Idempotency-Key"
        assert created.body["secret"] not in json.dumps(reused.body)
    shown = _on(dep, "GET", f"/v1/webhooks/{hook}", key).body
    assert shown["active"] is True and shown["updated_at"] == created.body["updated_at"]
    assert [w["id"] for w in _on(dep, "GET", "/v1/webhooks", key).body["data"]] == [hook]


@pytest.mark.parametrize(("value", "status"), [("k" * 255, 201), ("k" * 256, 400)])
def test_idempotency_keys_are_bounded(dep: Deployment, value: str, status: int) -> None:
    key = _key(dep, f"ws_k{status}{len(value)}")
    answer = _on(dep, "POST", "/v1/webhooks", key,
                 {"url": dep.receiver.url("/k"), "events": ["task.created"]},
                 {"Idempotency-Key": value})
    assert answer.status == status, answer.body
    if status == 400:
        assert answer.body["error"]["field"] == "Idempotency-Key"


def test_a_refused_request_is_not_remembered(dep: Deployment) -> None:
    """As Stripe: a 400 may be corrected and sent again with the same key."""
    key = _key(dep, "ws_retry")
    headers = {"Idempotency-Key": "fix-me"}
    bad = _on(dep, "POST", "/v1/webhooks", key, {"url": "nope", "events": ["task.created"]},
              headers)
    assert bad.status == 400
    good = _on(dep, "POST", "/v1/webhooks", key,
               {"url": dep.receiver.url("/fixed"), "events": ["task.created"]}, headers)
    assert good.status == 201, good.body


def _dead(dep: Deployment, key: str, workspace: str, count: int) -> str:
    """A disabled webhook and `count` events for it: `count` dead letters."""
    wh = _create(dep, key, active=False).body["id"]
    for n in range(count):
        dep.publisher.publish_event({"id": f"evt_{wh}_{n}", "event": "task.created",
                                     "workspace_id": workspace,
                                     "timestamp": "2025-10-14T10:30:00Z",
                                     "data": {"id": f"t{n}"}})
    dep.publisher.flush()
    return str(wh)


def _pages(dep: Deployment, key: str, query: str, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        path = f"/v1/dead-letters?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = _on(dep, "GET", path, key)
        assert answer.status == 200, answer.body
        pages.append(answer.body["data"])
        cursor = answer.body["next_cursor"]
        if cursor is None:
            return pages


def test_dead_letters_are_paged_per_workspace(dep: Deployment) -> None:
    key_a, key_b = _key(dep, "ws_dla"), _key(dep, "ws_dlb")
    wh_a = _dead(dep, key_a, "ws_dla", 11)
    wh_b = _dead(dep, key_b, "ws_dlb", 3)
    wait_until(lambda: len(_on(dep, "GET", "/v1/dead-letters?limit=100", key_a).body["data"])
               == 11, what="ws_dla's 11 dead letters listed", timeout=60)
    pages = _pages(dep, key_a, "", 4)
    assert [len(p) for p in pages] == [4, 4, 3]
    letters = [d for p in pages for d in p]
    assert {d["webhook_id"] for d in letters} == {wh_a}
    assert len({d["delivery_id"] for d in letters}) == 11
    assert [d["dead_at"] for d in letters] == sorted((d["dead_at"] for d in letters),
                                                     reverse=True)
    assert all(d["reason"] == "webhook_disabled" and not d["replayed"] for d in letters)
    # The same pages through a filter; another workspace's key sees only its own.
    assert [d for p in _pages(dep, key_a, f"&webhook_id={wh_a}&reason=webhook_disabled", 5)
            for d in p] == letters
    assert _pages(dep, key_a, "&reason=attempts_exhausted", 5) == [[]]
    assert {d["webhook_id"] for p in _pages(dep, key_b, "", 2) for d in p} == {wh_b}
    admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
    assert [d for p in _pages(dep, admin, "&workspace_id=ws_dla", 50) for d in p] == letters
    # Bad input is a 400 naming the field.
    assert _on(dep, "GET", "/v1/dead-letters?cursor=zzz", key_a).body["error"]["field"] == \
        "cursor"
    assert _on(dep, "GET", "/v1/dead-letters?workspace_id=ws_dlb", key_a).status == 400
    assert _on(dep, "GET", f"/v1/dead-letters?webhook_id={wh_b}", key_a).status == 404


def test_only_the_newest_dead_letters_of_a_workspace_are_listed(dep: Deployment) -> None:
    key = _key(dep, "ws_flood")
    wh = _dead(dep, key, "ws_flood", LISTED + 5)
    dlq = dep.reader(topics.DLQ)
    on_topic = dlq.wait_for(lambda ms: sum(m.key() == wh.encode() for m in ms) == LISTED + 5,
                            what="every letter on the topic")
    mine = [m for m in on_topic if m.key() == wh.encode()]
    newest = sorted(mine, key=lambda m: (DeadLetter.decode(m.value()).dead_at, m.partition(),
                                         m.offset()), reverse=True)[:LISTED]
    listed = [d for p in _pages(dep, key, "", 100) for d in p]
    assert [d["delivery_id"] for d in listed] == [
        DeadLetter.decode(m.value()).job.delivery_id for m in newest]
    # Replay (of what is listed) marks them replayed, and they are delivered.
    assert _on(dep, "POST", f"/v1/webhooks/{wh}/enable", key).status == 200
    replayed = _on(dep, "POST", f"/v1/webhooks/{wh}/replay", key, {})
    assert replayed.body == {"replayed": LISTED, "already_replayed": 0}
    dep.receiver.wait_for(lambda rs: len({r.headers["x-webhook-delivery"] for r in rs
                                          if r.headers.get("x-webhook-id") == wh}) == LISTED,
                          what="the replayed letters delivered")
    assert all(d["replayed"] for d in _pages(dep, key, "", 100)[0])
