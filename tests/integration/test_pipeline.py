"""End to end on the real broker: real worker process, real HTTP receiver on loopback."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.core import signing
from streams.core.events import stable_event_id
from streams.core.schemas import EVENT, registry
from streams.delivery.models import AttemptRecord, delivery_id_for
from streams.delivery.stage import DeliveryWorker
from streams.fanout.stage import FanoutStage
from streams.history.feeder import HistoryFeeder
from streams.kafka import topics
from streams.subscriptions.commands import Command
from streams.telemetry import metrics

from ..support.api import call
from ..support.kafka import group_lag
from ..support.pipeline import SECRET, Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration


DEPLOYMENT: DeploymentSpec = {"env": {
    # No retry comes due while the module runs (the metrics test counts every attempt),
    # and the lag gauges are sampled every second.
    "HOOKSTREAM_RETRY_DELAYS": "3600,3600,3600", "HOOKSTREAM_SAMPLE_INTERVAL": "1"}}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def test_event_reaches_exactly_matching_active_webhooks_of_its_workspace(dep: Deployment) -> None:
    ws, other_ws = f"ws_{_uid()}", f"ws_{_uid()}"
    hooks = {
        "exact": (ws, ["task.created"], True),
        "family": (ws, ["task.*"], True),
        "star": (ws, ["*"], True),
        "other_type": (ws, ["task.deleted", "project.*"], True),
        "inactive": (ws, ["task.created"], False),
        "other_ws": (other_ws, ["*"], True),
    }
    ids = {name: f"wh_{name}_{_uid()}" for name in hooks}
    for name, (workspace, events, active) in hooks.items():
        dep.create_webhook(ids[name], workspace, f"/m/{ids[name]}", events, active=active)
    for name, (_, _, active) in hooks.items():
        wait_webhook_state(dep, ids[name], {"active": active})

    event_id = dep.publish("task.created", ws, {"id": "task_789", "name": "Design homepage"})
    wanted = {ids["exact"], ids["family"], ids["star"]}
    got = dep.receiver.wait_for(
        lambda rs: {r.headers.get("x-webhook-id") for r in rs
                    if json.loads(r.body)["id"] == event_id} >= wanted,
        what="deliveries to the three matching webhooks")
    # A marker event to the other workspace proves its webhook is live, then nothing of
    # the first event may have reached the non-matching ones.
    marker = dep.publish("task.created", other_ws, {"id": "task_marker"})
    got = dep.receiver.wait_for(
        lambda rs: any(json.loads(r.body)["id"] == marker for r in rs), what="marker")
    receivers_of_event = [r.headers["x-webhook-id"] for r in got
                          if json.loads(r.body)["id"] == event_id]
    assert sorted(receivers_of_event) == sorted(wanted)


def test_delivery_is_signed_with_every_header_and_a_canonical_body(dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    dep.create_webhook(wh, ws, f"/s/{wh}", ["task.created"])
    wait_webhook_state(dep, wh, {"active": True})
    data = {"id": "task_1", "name": "Überschrift ✓ \"quoted\"", "status": "todo",
            "priority": "high", "project_id": "proj_123", "due_date": "2025-10-30"}
    event_id = dep.publish("task.created", ws, data)
    dep.receiver.wait_for(lambda rs: bool(dep.receiver.at(f"/s/{wh}")), what="the delivery")
    (request,) = dep.receiver.at(f"/s/{wh}")
    h = request.headers
    assert h["content-type"] == "application/json"
    assert signing.verify(request.body, h["x-webhook-signature"], SECRET)
    assert h["x-webhook-signature"].startswith("sha256=")
    assert not signing.verify(request.body, h["x-webhook-signature"], SECRET + "x")
    assert h["x-webhook-id"] == wh
    assert h["x-webhook-event"] == "task.created"
    assert h["x-webhook-delivery"] == delivery_id_for(event_id, wh)
    assert h["x-webhook-timestamp"].isdigit()
    assert h["user-agent"].startswith("hookstream/")
    body = json.loads(request.body)
    assert list(body) == ["id", "event", "timestamp", "webhook_id", "data"]
    assert body["id"] == event_id and body["webhook_id"] == wh and body["data"] == data
    # What the documentation's receiver does: JSON.stringify(JSON.parse(body)).
    restringified = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert restringified == request.body


def test_every_attempt_is_in_the_delivery_log(dep: Deployment) -> None:
    ws, ok_hook, bad_hook = f"ws_{_uid()}", f"wh_ok_{_uid()}", f"wh_bad_{_uid()}"
    dep.receiver.status[f"/l/{bad_hook}"] = 503
    dep.create_webhook(ok_hook, ws, f"/l/{ok_hook}", ["comment.*"])
    dep.create_webhook(bad_hook, ws, f"/l/{bad_hook}", ["comment.created"])
    wait_webhook_state(dep, ok_hook, {"active": True})
    wait_webhook_state(dep, bad_hook, {"active": True})
    log = dep.reader(topics.DELIVERY_LOG)
    event_id = dep.publish("comment.created", ws, {"id": "c_1", "body": "hi"})

    def attempts(messages: list) -> dict[str, AttemptRecord]:
        records = [AttemptRecord.decode(m.value()) for m in messages]
        return {r.webhook_id: r for r in records if r.event_id == event_id}

    log.wait_for(lambda ms: len(attempts(ms)) == 2, what="two attempt records")
    found = attempts(log.messages)
    ok, bad = found[ok_hook], found[bad_hook]
    assert (ok.status, ok.response_code, ok.error, ok.attempt) == ("success", 200, None, 1)
    assert (bad.status, bad.response_code) == ("retrying", 503)
    assert bad.next_attempt_at is not None and bad.next_attempt_at > bad.attempted_at
    assert bad.error is not None and "503" in bad.error
    assert ok.delivery_id == delivery_id_for(event_id, ok_hook)
    assert ok.event_type == "comment.created" and ok.workspace_id == ws
    assert ok.response_time_ms >= 0 and ok.attempted_at > 0


def test_control_updates_take_effect_for_the_next_event(dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    dep.create_webhook(wh, ws, f"/u1/{wh}", ["task.created"])
    wait_webhook_state(dep, wh, {"active": True})
    first = dep.publish("task.created", ws, {"id": "t1"})
    dep.receiver.wait_for(lambda rs: bool(dep.receiver.at(f"/u1/{wh}")), what="first")

    dep.command("update", wh, webhook={"url": dep.receiver.url(f"/u2/{wh}"),
                                       "events": ["task.updated"]})
    wait_webhook_state(dep, wh, {"url": dep.receiver.url(f"/u2/{wh}")})
    dep.publish("task.created", ws, {"id": "t2"})  # no longer subscribed
    second = dep.publish("task.updated", ws, {"id": "t2"})
    dep.receiver.wait_for(lambda rs: bool(dep.receiver.at(f"/u2/{wh}")), what="second")

    dep.command("disable", wh, reason="maintenance")
    wait_webhook_state(dep, wh, {"active": False, "disabled_reason": "maintenance"})
    log = dep.reader(topics.DELIVERY_LOG)
    third = dep.publish("task.updated", ws, {"id": "t3"})
    # Held, not sent: dead-lettered as webhook_disabled (the failure path replays it).
    log.wait_for(lambda ms: any(AttemptRecord.decode(m.value()).event_id == third
                                and AttemptRecord.decode(m.value()).status == "disabled"
                                for m in ms), what="t3 held while disabled")
    dep.command("enable", wh)
    wait_webhook_state(dep, wh, {"active": True})
    fourth = dep.publish("task.updated", ws, {"id": "t4"})
    dep.receiver.wait_for(lambda rs: len(dep.receiver.at(f"/u2/{wh}")) >= 2, what="fourth")

    dep.command("delete", wh)
    wait_webhook_state(dep, wh, None)
    dep.publish("task.updated", ws, {"id": "t5"})
    # A live marker webhook in the same workspace proves later events were processed.
    marker_hook = f"wh_marker_{_uid()}"
    dep.create_webhook(marker_hook, ws, f"/u3/{marker_hook}", ["task.updated"])
    wait_webhook_state(dep, marker_hook, {"active": True})
    marker = dep.publish("task.updated", ws, {"id": "t6"})
    dep.receiver.wait_for(lambda rs: any(json.loads(r.body)["id"] == marker for r in rs),
                          what="marker")
    assert [json.loads(r.body)["id"] for r in dep.receiver.at(f"/u1/{wh}")] == [first]
    assert [json.loads(r.body)["id"] for r in dep.receiver.at(f"/u2/{wh}")] == [second, fourth]


def test_commands_sent_back_to_back_each_apply_to_the_one_before(dep: Deployment) -> None:
    """No command waits for the view to read the previous one back: the agent applies each
    to what it last wrote. Four in one flush end where only all four lead (each sets what
    the others do not), so none was refused for a state the view did not show yet."""
    wh = f"wh_{uuid.uuid4().hex[:8]}"
    for command in (
        Command(op="create", webhook_id=wh, workspace_id="ws_b2b", webhook={
            "url": dep.receiver.url(f"/b2b/{wh}"), "events": ["task.created"],
            "secret": SECRET}),
        Command(op="update", webhook_id=wh, webhook={"description": "second"}),
        Command(op="disable", webhook_id=wh, reason="third"),
        Command(op="update", webhook_id=wh, webhook={"events": ["task.*"]}),
    ):
        dep.publisher.send_command(command)
    dep.publisher.flush()
    wait_webhook_state(dep, wh, {"active": False, "disabled_reason": "third",
                                 "description": "second", "events": ["task.*"]})


def test_json_and_avro_events_are_accepted_and_idless_events_get_stable_ids(
    dep: Deployment,
) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    dep.create_webhook(wh, ws, f"/f/{wh}", ["user.*"])
    wait_webhook_state(dep, wh, {"active": True})
    topic = dep.settings.topic(topics.domain_topic("user"))
    json_event = {"event": "user.added", "timestamp": "2025-10-14T10:30:00Z",
                  "workspace_id": ws, "data": {"id": "u_1", "name": "Ada", "custom": 7}}
    dep.publisher.publish_raw(topic, ws, json.dumps(json_event).encode())
    avro_event = registry().encode(EVENT, {
        "id": "evt_avro_1", "event": "user.role_changed", "timestamp": "2025-10-14T10:31:00Z",
        "workspace_id": ws,
        "data": ("io.hookstream.events.UserData", {"id": "u_1", "role": "admin"})})
    dep.publisher.publish_raw(topic, ws, avro_event)
    dep.publisher.flush()
    dep.receiver.wait_for(lambda rs: len(dep.receiver.at(f"/f/{wh}")) >= 2, what="both events")
    got = dep.receiver.at(f"/f/{wh}")
    bodies = {json.loads(r.body)["event"]: json.loads(r.body) for r in got}
    assert bodies["user.role_changed"]["id"] == "evt_avro_1"
    assert bodies["user.role_changed"]["data"] == {"id": "u_1", "role": "admin"}
    added = bodies["user.added"]
    assert added["data"] == {"id": "u_1", "name": "Ada", "custom": 7}
    log = dep.reader(topics.DELIVERY_LOG)
    log.wait_for(lambda ms: any(AttemptRecord.decode(m.value()).webhook_id == wh
                                and AttemptRecord.decode(m.value()).event_type == "user.added"
                                for m in ms), what="log of the JSON event")
    # The derived id is a function of where the event sits, so reprocessing repeats it.
    positions = [(m.topic(), m.partition(), m.offset()) for m in dep.reader(
        topics.domain_topic("user")).wait_for(lambda ms: len(ms) >= 1, what="user events")]
    assert added["id"] in {stable_event_id(*p) for p in positions}


def test_bad_events_and_commands_are_quarantined_and_traffic_flows_on(dep: Deployment) -> None:
    ws, wh = f"ws_{_uid()}", f"wh_{_uid()}"
    dep.create_webhook(wh, ws, f"/q/{wh}", ["project.*"])
    wait_webhook_state(dep, wh, {"active": True})
    project_topic = dep.settings.topic(topics.domain_topic("project"))
    control_topic = dep.settings.topic(topics.CONTROL)
    bad = {
        b"not json at all": project_topic,
        b"\xc3\x01" + b"\x00" * 8 + b"\x02": project_topic,
        json.dumps({"event": "project.exploded", "timestamp": "2025-10-14T10:30:00Z",
                    "workspace_id": ws, "data": {"id": "p"}}).encode(): project_topic,
        json.dumps({"op": "create", "webhook_id": "wh_x"}).encode(): control_topic,
    }
    for value, topic in bad.items():
        key = "wh_x" if topic == control_topic else ws
        dep.publisher.publish_raw(topic, key, value)
    dep.publisher.flush()
    good = dep.publish("project.archived", ws, {"id": "proj_1", "status": "archived"})
    dep.receiver.wait_for(lambda rs: any(json.loads(r.body)["id"] == good
                                         for r in dep.receiver.at(f"/q/{wh}")), what="good")
    invalid = dep.reader(topics.INVALID)
    invalid.wait_for(lambda ms: {m.value() for m in ms} >= set(bad), what="all quarantined")
    for message in invalid.messages:
        headers = dict(message.headers())
        assert headers["hookstream-source-topic"].decode() in (project_topic, control_topic)
        assert int(headers["hookstream-source-offset"]) >= 0
        assert headers["hookstream-error"]


def _scrape(dep: Deployment) -> tuple[dict[str, float], set[str]]:
    """Every sample of the worker's /metrics, by `name{label="value",...}` (labels sorted),
    and which of them count things: every counter's `_total`, and every histogram's
    `_count` and `+Inf` bucket (its `_created` samples are timestamps, its sums durations)."""
    url = f"http://127.0.0.1:{dep.workers[0].port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values, counts = {}, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            values[name] = sample.value
            if (family.type == "counter" and sample.name.endswith("_total")) or (
                    family.type == "histogram" and (sample.name.endswith("_count") or (
                        sample.name.endswith("_bucket") and sample.labels["le"] == "+Inf"))):
                counts.add(name)
    return values, counts


def _settled(dep: Deployment) -> bool:
    """Nothing the worker has yet to process: each group committed all it reads (the
    counters move before an offset is committed). Upstream first, so a job the fan-out
    wrote before its commit is counted in the delivery group's end offsets."""
    s, bootstrap = dep.settings, dep.settings.bootstrap_servers
    p = s.topic_prefix
    fanout = group_lag(bootstrap, p + FanoutStage.group,
                       [s.topic(topics.domain_topic(f)) for f in s.families])
    agents = group_lag(bootstrap, f"{p}hookstream", [s.topic(t) for t in (
        topics.CONTROL, topics.DLQ)])
    delivery = group_lag(bootstrap, p + DeliveryWorker.group, [s.topic(topics.DELIVERIES)])
    history = group_lag(bootstrap, p + HistoryFeeder.group, [s.topic(topics.DELIVERY_LOG)])
    return not any({**fanout, **agents, **delivery, **history}.values())


def test_metrics_count_what_happened(dep: Deployment) -> None:
    """Exactly what this test did, label by label: the counters read before and after,
    each time once the worker has processed everything it was given."""
    ws, ok, failing, off = (f"ws_{_uid()}", f"wh_ok_{_uid()}", f"wh_503_{_uid()}",
                            f"wh_off_{_uid()}")
    retry_topics = [dep.settings.topic(t) for t in topics.RETRY_TOPICS]
    delivery_group = dep.prefix + DeliveryWorker.group

    def backlog() -> dict[str, int]:
        lag = group_lag(dep.settings.bootstrap_servers, delivery_group, retry_topics)
        return {f'hookstream_retry_backlog{{topic="{metrics.stage_of(t)}"}}': n
                for t, n in lag.items()}

    def sampled(expected: dict[str, int]) -> tuple[dict[str, float], set[str]] | None:
        values, counts = _scrape(dep)
        return (values, counts) if all(values.get(k) == n for k, n in expected.items()) else None

    wait_until(lambda: _settled(dep), what="the worker idle before")
    waiting = backlog()
    before, counted_before = wait_until(lambda: sampled(waiting),
                                        what=f"the retry backlog gauges at {waiting}")

    dep.receiver.status[f"/n/{failing}"] = 503
    dep.create_webhook(ok, ws, f"/n/{ok}", ["task.*"])
    dep.create_webhook(failing, ws, f"/n/{failing}", ["task.created"])
    dep.create_webhook(off, ws, f"/n/{off}", ["task.created"], active=False)
    for wh, active in ((ok, True), (failing, True), (off, False)):
        wait_webhook_state(dep, wh, {"active": active})
    for n in range(4):  # to ok (success), failing (503: retrying), off (held: disabled)
        dep.publish("task.created", ws, {"id": f"task_m{n}"})
    dep.publish("task.updated", ws, {"id": "task_m4"})  # to ok only
    task_topic = dep.settings.topic(topics.domain_topic("task"))
    for garbage in (b"not json", b"\xc3\x01 truncated avro"):
        dep.publisher.publish_raw(task_topic, ws, garbage)
    dep.publisher.publish_raw(dep.settings.topic(topics.CONTROL), "wh_nope", b"{not a command")
    dep.publisher.publish_raw(dep.settings.topic(topics.DELIVERIES), ok, b"not a job")
    dep.publisher.flush()
    admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
    tested = [call(dep.workers[0].port, "POST", f"/v1/webhooks/{wh}/test", admin).body
              for wh in (ok, failing)]
    assert [t["status"] for t in tested] == ["success", "failed"], tested
    dep.receiver.wait_for(lambda _: len(dep.receiver.at(f"/n/{ok}")) == 6
                          and len(dep.receiver.at(f"/n/{failing}")) == 5,
                          what="5 events and a test at ok, 4 and a test at failing")
    wait_until(lambda: _settled(dep), what="the worker idle after")
    after, counted_after = _scrape(dep)

    expected = {
        'hookstream_deliveries_total{outcome="success",stage="deliveries"}': 5,
        'hookstream_deliveries_total{outcome="retrying",stage="deliveries"}': 4,
        'hookstream_deliveries_total{outcome="disabled",stage="deliveries"}': 4,
        'hookstream_deliveries_total{outcome="success",stage="test"}': 1,
        'hookstream_deliveries_total{outcome="failed",stage="test"}': 1,
        'hookstream_dead_letters_total{reason="webhook_disabled"}': 4,
        'hookstream_invalid_messages_total{topic="domain.task"}': 2,
        'hookstream_invalid_messages_total{topic="hookstream.control"}': 1,
        'hookstream_invalid_messages_total{topic="hookstream.deliveries"}': 1,
        "hookstream_end_to_end_seconds_count": 5,
        'hookstream_end_to_end_seconds_bucket{le="+Inf"}': 5,
        "hookstream_attempt_seconds_count": 9,  # tests are not attempts of a delivery
        'hookstream_attempt_seconds_bucket{le="+Inf"}': 9,
        'hookstream_subscriptions{state="active"}': 2,
        'hookstream_subscriptions{state="disabled"}': 1,
    }
    # Every count the worker exports, whether this test expects it to move or not.
    counted = counted_before | counted_after | {'hookstream_subscriptions{state="active"}',
                                                'hookstream_subscriptions{state="disabled"}'}
    assert counted >= expected.keys(), expected.keys() - counted
    changes = {name: after.get(name, 0) - before.get(name, 0) for name in sorted(counted)}
    assert changes == {name: expected.get(name, 0) for name in sorted(counted)}
    assert after['hookstream_end_to_end_seconds_sum'] > before['hookstream_end_to_end_seconds_sum']

    # Gauges are sampled every HOOKSTREAM_SAMPLE_INTERVAL: the four failed jobs wait in the
    # first retry topic (due in an hour), and the stages have nothing left.
    retry_1m = f'hookstream_retry_backlog{{topic="{metrics.stage_of(retry_topics[0])}"}}'
    assert backlog() == {**waiting, retry_1m: waiting[retry_1m] + 4}
    idle = {f'hookstream_consumer_lag{{group="{dep.prefix}{group}",topic="{topic}"}}': 0
            for group, reads in (
                (FanoutStage.group, [dep.settings.topic(topics.domain_topic(f))
                                     for f in dep.settings.families]),
                (DeliveryWorker.group, [dep.settings.topic(topics.DELIVERIES)]))
            for topic in reads}
    gauges = {**backlog(), **idle}
    wait_until(lambda: sampled(gauges), what=f"the gauges at {gauges}")


def test_worker_logs_are_json_with_ids_and_no_payloads(dep: Deployment) -> None:
    lines = [json.loads(line) for line in dep.workers[0].log_text().splitlines()
             if line.startswith("{")]
    deliveries = [e for e in lines if e["message"].startswith("delivery dlv_")]
    assert deliveries, "no delivery log lines"
    assert all({"time", "level", "logger", "delivery_id", "webhook_id", "event_id"} <= set(e)
               for e in deliveries)
    # The signing test sent this data; payloads never reach the log.
    assert "Überschrift" not in dep.workers[0].log_text()
