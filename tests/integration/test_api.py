"""The REST API on real workers: every endpoint, its errors, two workers, tenant isolation."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from jsonschema import Draft202012Validator

from streams.core import catalog, signing
from streams.core.apikeys import new_key
from streams.core.eventschema import DESCRIPTIONS
from streams.core.timeutil import now_ms
from streams.delivery.models import AttemptRecord, DeliveryJob
from streams.fanout.stage import FanoutStage
from streams.kafka import topics

from ..support.api import Answer, call
from ..support.hostile_bodies import RAW_TEST_BODIES
from ..support.kafka import group_lag, read_to_end
from ..support.pipeline import Deployment
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration


def _cli(dep: Deployment, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                            text=True, timeout=60, env=dep.env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _new_key(dep: Deployment, workspace: str) -> str:
    """A workspace key, stored as `hookstream apikeys create` stores one (test_cli runs that
    command itself; here a Python start per key would cost seconds)."""
    key, record = new_key(workspace, now_ms())
    dep.publisher.publish_raw(dep.settings.topic(topics.API_KEYS), record.key_id,
                              record.encode())
    dep.publisher.flush()
    return key


class Api:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
        self.key_a = _new_key(dep, "ws_a")
        self.key_b = _new_key(dep, "ws_b")
        for worker in dep.workers:  # keys reach every worker's table
            for key in (self.key_a, self.key_b):
                wait_until(lambda w=worker, k=key: call(w.port, "GET", "/v1/webhooks", k)
                           .status == 200, what="key known")

    def on(self, n: int, method: str, path: str, key: str | None, body: object = None,
           **kwargs: object) -> Answer:
        return call(self.dep.workers[n].port, method, path, key, body, **kwargs)  # type: ignore[arg-type]

    def create(self, key: str, path: str, **fields: object) -> dict:
        body = {"url": self.dep.receiver.url(path), "events": ["task.created"], **fields}
        answer = self.on(0, "POST", "/v1/webhooks", key, body)
        assert answer.status == 201, answer.body
        return dict(answer.body)


DEPLOYMENT: DeploymentSpec = {"workers": 2, "env": {"HOOKSTREAM_RETRY_DELAYS": "1,1,1"}}


@pytest.fixture(scope="module")
def api(dep: Deployment) -> Api:
    return Api(dep)


def test_keys_are_required_and_checked(api: Api) -> None:
    assert api.on(0, "GET", "/v1/webhooks", None).status == 401
    assert api.on(0, "GET", "/v1/webhooks", "hsk_nope_nope").status == 401
    assert api.on(0, "GET", "/v1/webhooks", api.key_a[:-1] + "x").status == 401
    doomed = _new_key(api.dep, "ws_a")
    wait_until(lambda: api.on(1, "GET", "/v1/webhooks", doomed).status == 200, what="new key")
    key_id = doomed.split("_")[1]
    _cli(api.dep, "apikeys", "revoke", key_id)
    wait_until(lambda: api.on(1, "GET", "/v1/webhooks", doomed).status == 401,
               what="revoked key refused")
    listed = json.loads(_cli(api.dep, "apikeys", "list", "--json"))
    assert {"ws_a", "ws_b"} <= {row["workspace_id"] for row in listed}
    assert not any("hash" in row or "key" in row for row in listed)


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_the_api_listens_on_its_bind_address_only(api: Api) -> None:
    """HOOKSTREAM_WEB_HOST (127.0.0.1 here, the default) reached faust as the host it
    advertises, not the one it binds: the API listened on every interface."""
    port = api.dep.workers[0].port
    socket.create_connection(("127.0.0.1", port), timeout=10).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=10)  # loopback, another address


def test_what_the_server_cannot_read_is_a_4xx_and_one_log_line(api: Api) -> None:
    """A non-UTF-8 byte in a key answered 500; an unreadable request logged a traceback."""
    worker = api.dep.workers[0]
    odd_key = _raw_exchange(worker.port, b"GET /v1/webhooks HTTP/1.1\r\nHost: x\r\n"
                            b"Authorization: Bearer hsk_\xe9_x\r\nConnection: close\r\n\r\n")
    assert odd_key.split(b"\r\n", 1)[0].split(b" ")[1] == b"401", odd_key[:200]
    before = len(worker.log_text())
    long_line = _raw_exchange(worker.port, b"GET /v1/webhooks?cursor=" + b"x" * 10_000
                              + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert long_line.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", long_line[:200]
    wait_until(lambda: "bad request" in worker.log_text()[before:], what="the warning")
    logged = worker.log_text()[before:]
    assert "Traceback" not in logged and "x" * 300 not in logged, logged[-2000:]


def test_create_read_update_delete_across_workers(api: Api) -> None:
    created = api.create(api.key_a, "/crud", description="CRM sync")
    wh = created["id"]
    assert created["secret"].startswith("whsec_") and len(created["secret"]) >= 44
    assert created["workspace_id"] == "ws_a" and created["active"] is True
    # Read your writes, on the other worker.
    got = api.on(1, "GET", f"/v1/webhooks/{wh}", api.key_a)
    assert got.status == 200 and "secret" not in got.body
    assert got.body["description"] == "CRM sync"
    listed = api.on(1, "GET", "/v1/webhooks?limit=100", api.key_a).body
    assert wh in [w["id"] for w in listed["data"]]
    patched = api.on(0, "PATCH", f"/v1/webhooks/{wh}", api.key_a,
                     {"events": ["task.*", "project.archived"]})
    assert patched.status == 200 and patched.body["events"] == ["task.*", "project.archived"]
    assert api.on(1, "GET", f"/v1/webhooks/{wh}", api.key_a).body["events"] == [
        "task.*", "project.archived"]
    assert api.on(0, "DELETE", f"/v1/webhooks/{wh}", api.key_a).status == 204
    assert api.on(1, "GET", f"/v1/webhooks/{wh}", api.key_a).status == 404


def test_list_is_paginated(api: Api) -> None:
    ids = {api.create(api.key_b, f"/page/{n}")["id"] for n in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/webhooks?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.on(1, "GET", query, api.key_b).body
        assert len(page["data"]) <= 2
        seen += [w["id"] for w in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b"[]", "body"),
    (json.dumps({"url": "https://example.com/h", "events": ["task.created"], "x": 1}).encode(),
     "x"),
    (json.dumps({"url": "https://example.com/h", "events": ["task.exploded"]}).encode(),
     "events"),
    (json.dumps({"url": "https://example.com/h", "events": []}).encode(), "events"),
    (json.dumps({"url": "not a url", "events": ["*"]}).encode(), "url"),
    (json.dumps({"url": "https://user:pw@example.com/h", "events": ["*"]}).encode(), "url"),
    (json.dumps({"events": ["*"]}).encode(), "url"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "description": "d" * 501}).encode(), "description"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"], "secret": "short"}).encode(),
     "secret"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "signature_scheme": "md5"}).encode(), "signature_scheme"),
    (b'{"url": "' + b"x" * (1024 * 1024) + b'"}', "body"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "headers": {"Host": "evil.example"}}).encode(), "headers.Host"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "headers": {"X-Split": "a\r\nX-Injected: 1"}}).encode(), "headers.X-Split"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "filter": {"$or": [{"data.p": {"$regex": "."}}]}}).encode(),
     "filter.$or[0].data.p"),
    (json.dumps({"url": "https://example.com/h", "events": ["*"],
                 "rate_limit": 0}).encode(), "rate_limit"),
])
def test_bad_requests_get_400_naming_the_field(api: Api, body: bytes, field: str) -> None:
    answer = api.on(0, "POST", "/v1/webhooks", api.key_a, raw=body)
    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == field
    assert answer.body["error"]["code"] == "invalid_request"


def test_tenant_isolation(api: Api) -> None:
    theirs = api.create(api.key_b, "/iso/b")["id"]
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"),
                         ("POST", "/replay"), ("POST", "/enable"), ("POST", "/disable"),
                         ("POST", "/rotate-secret"), ("GET", "/deliveries")]:
        body = {"events": ["*"]} if method == "PATCH" else None
        answer = api.on(0, method, f"/v1/webhooks/{theirs}{path}", api.key_a, body)
        assert answer.status == 404, (method, path, answer.body)
    assert theirs not in [w["id"] for w in
                          api.on(0, "GET", "/v1/webhooks?limit=100", api.key_a).body["data"]]
    for listing in ("/v1/webhooks", "/v1/dead-letters"):  # naming theirs: one answer for both
        named = api.on(0, "GET", f"{listing}?workspace_id=ws_b", api.key_a)
        assert named.status == 400 and named.body["error"]["field"] == "workspace_id", listing
    assert api.on(0, "GET", f"/v1/webhooks/{theirs}", api.admin).status == 200
    for internal in (f"/internal/subscriptions/{theirs}", f"/internal/webhooks/{theirs}/summary",
                     f"/internal/webhooks/{theirs}/attempts"):
        assert api.on(1, "GET", internal, api.key_a).status == 404, internal
        assert api.on(1, "GET", internal, None).status == 401, internal
        assert api.on(1, "GET", internal, api.key_b).status == 200, internal
    # B's events never reach A's endpoints.
    mine = api.create(api.key_a, "/iso/a", events=["*"])["id"]
    api.dep.publish("task.created", "ws_b", {"id": "b-only"})
    api.dep.receiver.wait_for(lambda _: bool(api.dep.receiver.at("/iso/b")), what="B's event")
    assert not api.dep.receiver.at("/iso/a"), mine


def test_test_endpoint_signs_logs_and_works_when_disabled(api: Api) -> None:
    created = api.create(api.key_a, "/t/1")
    wh, secret = created["id"], created["secret"]
    assert api.on(0, "POST", f"/v1/webhooks/{wh}/disable", api.key_a,
                  {"reason": "fixing"}).body["active"] is False
    answer = api.on(1, "POST", f"/v1/webhooks/{wh}/test", api.key_a)
    assert answer.status == 200, answer.body
    assert answer.body["status"] == "success" and answer.body["response_code"] == 200
    assert answer.body["response_time_ms"] >= 0 and answer.body["error"] is None
    (request,) = api.dep.receiver.at("/t/1")
    assert signing.verify(request.body, request.headers["x-webhook-signature"], secret)
    assert json.loads(request.body)["event"] == "webhook.test"
    api.dep.receiver.status["/t/1"] = 500
    failed = api.on(0, "POST", f"/v1/webhooks/{wh}/test", api.key_a).body
    assert (failed["status"], failed["response_code"]) == ("failed", 500)
    assert len(api.dep.receiver.at("/t/1")) == 2  # tests are never retried
    log = api.dep.reader(topics.DELIVERY_LOG)
    log.wait_for(lambda ms: sum(1 for m in ms if m.key() == wh.encode()) >= 2,
                 what="test attempts in the log")
    statuses = [AttemptRecord.decode(m.value()).status for m in log.messages
                if m.key() == wh.encode()]
    assert statuses == ["success", "failed"]
    deliveries = wait_until(lambda: api.on(1, "GET", f"/v1/webhooks/{wh}/deliveries",
                                           api.key_a).body["data"], what="history")
    assert [d["status"] for d in deliveries][:2] == ["failed", "success"]
    assert set(deliveries[0]) >= {"id", "event", "timestamp", "status", "response_code",
                                  "response_time_ms", "attempt", "next_attempt_at", "error"}


def test_event_types_list_the_catalog_for_any_key_with_valid_examples(api: Api) -> None:
    answers = [api.on(n, "GET", "/v1/event-types", key) for n in (0, 1)
               for key in (api.key_a, api.key_b, api.admin)]
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    listing = answers[0].body
    assert all(a.body == listing for a in answers)  # one catalog, for every caller
    assert set(listing) == {"data", "next_cursor"} and listing["next_cursor"] is None
    assert [t["type"] for t in listing["data"]] == sorted(catalog.ALL_EVENT_TYPES)
    for entry in listing["data"]:
        assert entry["description"] == DESCRIPTIONS[entry["type"]]
        Draft202012Validator.check_schema(entry["schema"])
        errors = list(Draft202012Validator(entry["schema"]).iter_errors(entry["example"]))
        assert not errors, (entry["type"], errors)
        one = api.on(1, "GET", f"/v1/event-types/{entry['type']}", api.key_b)
        assert (one.status, one.body) == (200, entry)
    for unknown in ("task.exploded", catalog.TEST_EVENT, "task.*", "task.created.x"):
        missing = api.on(0, "GET", f"/v1/event-types/{unknown}", api.key_a)
        assert (missing.status, missing.body["error"]["code"]) == (404, "not_found"), unknown
    for path in ("/v1/event-types", "/v1/event-types/task.created"):
        assert api.on(0, "GET", path, None).status == 401
        assert api.on(0, "GET", path, "hsk_nope_nope").status == 401


def test_test_endpoint_sends_an_event_types_example(api: Api) -> None:
    # Subscribed to user.added only: a test sends what it is asked, as webhook.test does.
    created = api.create(api.key_a, "/t/typed", events=["user.added"])
    wh, secret = created["id"], created["secret"]
    entry = api.on(0, "GET", "/v1/event-types/task.created", api.key_a).body
    answer = api.on(1, "POST", f"/v1/webhooks/{wh}/test", api.key_a, {"event": "task.created"})
    assert answer.status == 200, answer.body
    assert (answer.body["status"], answer.body["response_code"]) == ("success", 200)
    (request,) = api.dep.receiver.at("/t/typed")
    assert signing.verify(request.body, request.headers["x-webhook-signature"], secret)
    assert request.headers["x-webhook-event"] == "task.created"
    assert request.headers["x-webhook-id"] == wh
    payload = json.loads(request.body)
    assert (payload["event"], payload["webhook_id"]) == ("task.created", wh)
    assert payload["data"] == entry["example"]
    Draft202012Validator(entry["schema"]).validate(payload["data"])
    attempts = wait_until(lambda: api.on(0, "GET", f"/v1/webhooks/{wh}/deliveries",
                                         api.key_a).body["data"], what="history")
    assert [(d["event"], d["event_id"], d["status"]) for d in attempts] == [
        ("task.created", payload["id"], "success")]
    assert request.headers["x-webhook-delivery"] == attempts[0]["id"]


@pytest.fixture(scope="module")
def tested(api: Api) -> str:
    """A webhook for the refused tests: nothing may reach its path."""
    return str(api.create(api.key_a, "/t/refused")["id"])


@pytest.mark.parametrize("raw, field", [
    (b'{"event": "task.exploded"}', "event"),
    (b'{"event": "task.*"}', "event"),
    (b'{"event": "webhook.test"}', "event"),
    (b'{"event": ""}', "event"),
    (b'{"event": null}', "event"),
    (b'{"event": 1}', "event"),
    (b'{"event": ["task.created"]}', "event"),
    (b'{"event": {"type": "task.created"}}', "event"),
    (b'{"event": "task.created", "data": {"id": "x"}}', "data"),
    (b'{"type": "task.created"}', "type"),
    (b'"task.created"', "body"),
    (b'["task.created"]', "body"),
    (b"{not json", "body"),
    (b'{"event": NaN}', "body"),
    (b"\xff\xfe", "body"),
    (b'{"event": "\\ud800"}', "body"),
])
def test_test_endpoint_refuses_bad_bodies_naming_the_field(api: Api, tested: str, raw: bytes,
                                                            field: str) -> None:
    answer = api.on(0, "POST", f"/v1/webhooks/{tested}/test", api.key_a, raw=raw)
    assert answer.status == 400, answer.body
    assert (answer.body["error"]["code"], answer.body["error"]["field"]) == (
        "invalid_request", field)
    assert not api.dep.receiver.at("/t/refused")


def test_test_endpoint_never_fails_on_hostile_bodies(api: Api) -> None:
    """Whatever the body: 200 and one delivery for {} or a catalog type, else a 400 naming a
    field of the body (or the body itself) and nothing sent. Never a 5xx."""
    created = api.create(api.key_a, "/t/hostile")
    wh, sent = created["id"], [0]

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(RAW_TEST_BODIES)
    def one(raw: bytes) -> None:
        answer = api.on(0, "POST", f"/v1/webhooks/{wh}/test", api.key_a, raw=raw)
        assert answer.status in (200, 400), (raw, answer.status, answer.body)
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        if answer.status == 200:
            assert parsed == {} or (parsed.keys() == {"event"}
                                    and parsed["event"] in catalog.ALL_EVENT_TYPES), raw
            sent[0] += 1
            request = api.dep.receiver.at("/t/hostile")[-1]
            assert request.headers["x-webhook-event"] == parsed.get("event", "webhook.test")
        else:
            fields = {"body", "event", *(parsed if isinstance(parsed, dict) else ())}
            assert answer.body["error"]["field"] in fields, (raw, answer.body)
        assert len(api.dep.receiver.at("/t/hostile")) == sent[0]

    one()
    assert sent[0] > 0, "no accepted body was generated: the strategy needs a look"


def test_the_cli_lists_event_types_and_tests_with_one(api: Api) -> None:
    env = {**api.dep.env, "HOOKSTREAM_URL": f"http://127.0.0.1:{api.dep.workers[0].port}",
           "HOOKSTREAM_API_KEY": api.key_b}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                              text=True, timeout=60, env=env)

    listing = api.on(1, "GET", "/v1/event-types", api.key_b).body["data"]
    listed = cli("event-types", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == listing
    human = cli("event-types")
    assert human.returncode == 0, human.stderr
    for entry in listing:
        assert entry["type"] in human.stdout
    one = cli("event-types", "comment.created", "--json")
    assert json.loads(one.stdout) == next(e for e in listing if e["type"] == "comment.created")
    wh = api.create(api.key_b, "/t/cli-typed")["id"]
    tested = cli("webhooks", "test", wh, "--event", "comment.created", "--json")
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["status"] == "success"
    (request,) = api.dep.receiver.at("/t/cli-typed")
    assert request.headers["x-webhook-event"] == "comment.created"
    for args, message in ((("webhooks", "test", wh, "--event", "comment.nope"),
                           "error: --event: unknown event type 'comment.nope'"),
                          (("event-types", "comment.nope"),
                           "error: 404 not_found: no event type comment.nope")):
        refused = cli(*args)
        assert refused.returncode != 0 and refused.stdout == ""
        assert refused.stderr.splitlines() == [refused.stderr.strip()], refused.stderr
        assert refused.stderr.startswith(message), refused.stderr
    assert len(api.dep.receiver.at("/t/cli-typed")) == 1

def test_rotation_signs_with_both_secrets_during_grace(api: Api) -> None:
    created = api.create(api.key_a, "/rot", events=["comment.created"])
    wh, old = created["id"], created["secret"]
    rotated = api.on(1, "POST", f"/v1/webhooks/{wh}/rotate-secret", api.key_a)
    assert rotated.status == 200 and rotated.body["secret"] != old
    new = rotated.body["secret"]
    api.dep.publish("comment.created", "ws_a", {"id": "c1"})
    api.dep.receiver.wait_for(lambda _: bool(api.dep.receiver.at("/rot")), what="delivery")
    (request,) = api.dep.receiver.at("/rot")
    assert signing.verify(request.body, request.headers["x-webhook-signature"], new)
    assert signing.verify(request.body, request.headers["x-webhook-signature-previous"], old)


def test_idempotency_key_returns_the_original_response(api: Api) -> None:
    body = {"url": api.dep.receiver.url("/idem"), "events": ["user.added"]}
    key = {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    first = api.on(0, "POST", "/v1/webhooks", api.key_a, body, headers=key)
    wait_until(lambda: api.on(1, "POST", "/v1/webhooks", api.key_a, body, headers=key).body
               == first.body, what="the same answer from the other worker")
    again = api.on(0, "POST", "/v1/webhooks", api.key_a, body, headers=key)
    assert (again.status, again.body) == (first.status, first.body)
    mine = [w for w in api.on(0, "GET", "/v1/webhooks?limit=100", api.key_a).body["data"]
            if w["url"] == body["url"]]
    assert len(mine) == 1


def test_standard_webhooks_scheme_verifies_with_the_published_library(api: Api) -> None:
    from standardwebhooks.webhooks import Webhook

    created = api.create(api.key_a, "/std", events=["user.added"],
                         signature_scheme="standard-webhooks")
    api.dep.publish("user.added", "ws_a", {"id": "u1"})
    api.dep.receiver.wait_for(lambda _: bool(api.dep.receiver.at("/std")), what="delivery")
    (request,) = api.dep.receiver.at("/std")
    payload = Webhook(created["secret"]).verify(request.body, {
        "webhook-id": request.headers["webhook-id"],
        "webhook-timestamp": request.headers["webhook-timestamp"],
        "webhook-signature": request.headers["webhook-signature"]})
    assert payload["data"] == {"id": "u1"}


def test_replay_endpoint_and_meta_endpoints(api: Api) -> None:
    created = api.create(api.key_b, "/rep", events=["project.created"])
    wh = created["id"]
    api.on(0, "POST", f"/v1/webhooks/{wh}/disable", api.key_b)
    api.dep.publish("project.created", "ws_b", {"id": "p1"})
    dlq = api.dep.reader(topics.DLQ)
    dlq.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms), what="held event")
    api.on(0, "POST", f"/v1/webhooks/{wh}/enable", api.key_b)
    replayed = api.on(1, "POST", f"/v1/webhooks/{wh}/replay", api.key_b, {})
    assert replayed.body == {"replayed": 1, "already_replayed": 0}
    api.dep.receiver.wait_for(lambda _: bool(api.dep.receiver.at("/rep")), what="replayed")
    assert api.on(0, "POST", f"/v1/webhooks/{wh}/replay", api.key_b).body["replayed"] == 0
    assert api.on(0, "GET", "/v1/event-types", None).status == 401
    assert api.on(1, "GET", "/healthz", None).status == 200
    assert api.on(1, "GET", "/readyz", None).body["ready"] is True


def test_the_cli_manages_webhooks_through_the_api(api: Api) -> None:
    env = {**api.dep.env, "HOOKSTREAM_URL": f"http://127.0.0.1:{api.dep.workers[1].port}",
           "HOOKSTREAM_API_KEY": api.key_a}

    def cli(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    created = json.loads(cli("webhooks", "create", "--workspace", "ws_a", "--url",
                             api.dep.receiver.url("/cli"), "--events", "task.created", "--json"))
    wh, secret = created["id"], created["secret"]
    assert secret.startswith("whsec_")
    assert wh in [w["id"] for w in json.loads(cli("webhooks", "list", "--json"))]
    assert json.loads(cli("webhooks", "show", wh, "--json"))["events"] == ["task.created"]
    cli("webhooks", "update", wh, "--events", "task.*,comment.created")
    assert json.loads(cli("webhooks", "show", wh, "--json"))["events"] == [
        "task.*", "comment.created"]
    cli("webhooks", "disable", wh, "--reason", "cli")
    assert json.loads(cli("webhooks", "show", wh, "--json"))["disabled_reason"] == "cli"
    assert "success: 200" in cli("webhooks", "test", wh)
    cli("webhooks", "enable", wh)
    rotated = json.loads(cli("webhooks", "rotate-secret", wh, "--json"))
    assert rotated["secret"] != secret
    attempts = wait_until(lambda: json.loads(cli("deliveries", wh, "--json")), what="history")
    assert attempts[0]["event"] == "webhook.test" and attempts[0]["status"] == "success"
    assert "deleted" in cli("webhooks", "delete", wh)
    gone = subprocess.run([sys.executable, "-m", "streams", "webhooks", "show", wh],
                          capture_output=True, text=True, timeout=60, env=env)
    assert gone.returncode != 0 and gone.stderr.startswith("error: 404 not_found")


def test_status_shows_lag_per_stage_and_disabled_webhooks(api: Api) -> None:
    wh = api.create(api.key_b, "/status")["id"]
    api.on(0, "POST", f"/v1/webhooks/{wh}/disable", api.key_b, {"reason": "for status"})
    status = json.loads(_cli(api.dep, "status", "--json"))
    assert set(status["lag"]) >= {"fan-out", "delivery", "1m retry", "5m retry", "30m retry"}
    assert all(isinstance(v, int) and v >= 0 for v in status["lag"].values())
    assert {"id": wh, "workspace_id": "ws_b", "reason": "for status"} in status["disabled"]


def test_custom_headers_and_a_filter_end_to_end(api: Api) -> None:
    """Headers reach the receiver, sealed on every topic and masked on reads; the filter
    lets through only the events it matches (a witness without one gets them all)."""
    token = f"tok_live_{uuid.uuid4().hex}"
    filtered = api.create(api.key_a, "/controls/filtered",
                          headers={"X-Customer-Token": token},
                          filter={"data.name": {"$prefix": "Urgent"}}, rate_limit=50)
    witness = api.create(api.key_a, "/controls/witness")
    for n in (0, 1):
        wait_until(lambda n=n: api.on(n, "GET", f"/v1/webhooks/{witness['id']}",
                                      api.key_a).status == 200, what="webhooks known")
    shown = api.on(1, "GET", f"/v1/webhooks/{filtered['id']}", api.key_a).body
    assert shown["headers"] == {"X-Customer-Token": "********"}
    assert (shown["filter"], shown["rate_limit"]) == (
        {"data.name": {"$prefix": "Urgent"}}, 50)
    dep = api.dep
    names = ["Routine A", "Urgent: outage", "Routine B", "Urgent: breach"]
    ids = [dep.publish("task.created", "ws_a", {"id": f"t_{n}", "name": name})
           for n, name in enumerate(names)]
    dep.receiver.wait_for(lambda got: len([r for r in got if r.path == "/controls/witness"])
                          >= len(names), what="every event at the witness")
    # The fan-out has committed past every event: any job it made is on the topic now.
    s = dep.settings
    wait_until(lambda: not any(group_lag(s.bootstrap_servers, s.topic_prefix + FanoutStage.group,
                                         [s.topic(topics.domain_topic("task"))]).values()),
               what="the fan-out to commit")
    jobs = [DeliveryJob.decode(m.value()) for m in read_to_end(
        s.bootstrap_servers, s.topic(topics.DELIVERIES))]
    assert sorted(j.event_id for j in jobs if j.webhook_id == filtered["id"]) == sorted(
        [ids[1], ids[3]])
    got = dep.receiver.wait_for(
        lambda got: len([r for r in got if r.path == "/controls/filtered"]) >= 2,
        what="the urgent events")
    urgent = [r for r in got if r.path == "/controls/filtered"]
    assert sorted(json.loads(r.body)["id"] for r in urgent) == sorted([ids[1], ids[3]])
    assert all(r.headers["x-customer-token"] == token for r in urgent)
    # Never plaintext on a topic; updates replace and clear.
    for topic in (topics.CONTROL, topics.SUBSCRIPTIONS):
        assert not any(token.encode() in (m.value() or b"")
                       for m in read_to_end(s.bootstrap_servers, s.topic(topic)))
    cleared = api.on(0, "PATCH", f"/v1/webhooks/{filtered['id']}", api.key_a,
                     {"headers": None, "filter": None, "rate_limit": None})
    assert cleared.status == 200, cleared.body
    assert (cleared.body["headers"], cleared.body["filter"], cleared.body["rate_limit"]) == (
        {}, None, None)


@pytest.mark.exclusive  # arrivals per second of the receiver's clock
def test_a_rate_limited_webhook_gets_a_burst_paced_and_its_neighbour_does_not_wait(
        api: Api) -> None:
    """500 events at once: the webhook limited to 20/s gets them all, never more than 20
    in one second of the receiver's clock (one more on an edge); its neighbour in the same
    workspace, unlimited, has all of its own long before."""
    key = _new_key(api.dep, "ws_rate")
    wait_until(lambda: api.on(0, "GET", "/v1/webhooks", key).status == 200, what="key known")
    limited = api.create(key, "/rate/limited", rate_limit=20)
    neighbour = api.create(key, "/rate/neighbour")
    for n in (0, 1):
        wait_until(lambda n=n: api.on(n, "GET", f"/v1/webhooks/{neighbour['id']}",
                                      key).status == 200, what="webhooks known")
    dep = api.dep
    burst = 500
    ids = [dep.publisher.publish_event({
        "id": f"evt_rate_{n}_{uuid.uuid4().hex[:6]}", "event": "task.created",
        "workspace_id": "ws_rate", "timestamp": "2025-10-14T10:30:00Z",
        "data": {"id": f"t_{n}", "name": "burst"}}).id for n in range(burst)]
    dep.publisher.flush()
    got = dep.receiver.wait_for(
        lambda got: len([r for r in got if r.path == "/rate/limited"]) >= burst,
        timeout=120, what="the whole burst at the limited webhook")
    paced = sorted(r.at for r in got if r.path == "/rate/limited")
    others = sorted(r.at for r in got if r.path == "/rate/neighbour")
    assert sorted(json.loads(r.body)["id"] for r in got if r.path == "/rate/limited") == sorted(
        ids)
    per_second: dict[int, int] = {}
    for at in paced:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    assert max(per_second.values()) <= 21, per_second
    assert len(others) == burst
    assert others[-1] < paced[burst // 2], "the neighbour waited for the limited webhook"
    assert limited["rate_limit"] == 20 and neighbour["rate_limit"] is None
    print(f"\nrate limit 20/s, burst of {burst}: busiest second {max(per_second.values())}, "
          f"{(paced[-1] - paced[0]):.1f}s first to last; the neighbour's {burst} in "
          f"{(others[-1] - others[0]):.1f}s")
