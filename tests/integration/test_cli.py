"""The hookstream command: bad arguments get one clear line and a non-zero exit; with
--json every command prints one JSON document that says what really happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streams.core.schemas import EVENT, registry
from streams.core.signing import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from streams.kafka import topics
from streams.kafka.admin import create_topics, delete_topics
from streams.settings import Settings

from ..support.api import call
from ..support.kafka import read_to_end
from ..support.pipeline import Deployment
from ..support.waiting import wait_until

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                          text=True, timeout=60, env=env or dict(os.environ))


def run_json(env: dict[str, str], *args: str) -> Any:
    """Run a command with --json: it succeeds, and stdout is one JSON document, only."""
    result = run(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # one document: anything else on stdout fails here


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def own_topics(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    """Settings for a prefix of its own, its topics created, and deleted afterwards."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "HOOKSTREAM_TOPIC_PREFIX": f"t{_uid()}.", "HOOKSTREAM_PARTITIONS": "3"}
    current = Settings.from_env(env)
    create_topics(current)
    try:
        yield env
    finally:
        delete_topics(current)


def api_env(dep: Deployment) -> dict[str, str]:
    """The deployment's settings, the CLI pointed at its worker's API with the admin key."""
    env = {**dep.env, "HOOKSTREAM_URL": f"http://127.0.0.1:{dep.workers[0].port}"}
    env.pop("HOOKSTREAM_API_KEY", None)
    return env


@pytest.mark.parametrize("args, message", [
    (["publish", "task.bogus", "--workspace", "ws_1"], "unknown event type 'task.bogus'"),
    (["publish", "task.created", "--workspace", "ws_1", "--data", "{nope"], "--data is not JSON"),
    (["publish", "task.created"], "give EVENT and --workspace, or --file"),
    (["publish", "--file", "/nonexistent/events.jsonl"], "--file: No such file"),
    (["publish", "task.created", "--workspace", "ws", "--data", '{"name": "x"}'],
     "'data.id' is required"),
    (["webhooks", "create", "--workspace", "ws", "--url", "ftp://x", "--events", "task.created"],
     "--url must be an http(s) URL"),
    (["webhooks", "create", "--workspace", "ws", "--url", "https://example.com/h",
      "--events", "task.nope"], "--events: unknown event type 'task.nope'"),
    (["webhooks", "update", "wh_1"], "nothing to update"),
    (["webhooks", "test", "wh_1", "--event", "task.nope"],
     "--event: unknown event type 'task.nope'"),
    (["webhooks", "test", "wh_1", "--event"], "Option '--event' requires an argument"),
    (["webhooks", "frobnicate"], "No such command 'frobnicate'"),
    (["kafka", "up", "--timeout", "soon"], "Invalid value for '--timeout'"),
    # Each of these printed a traceback of 40-70 lines, or hung.
    (["kafka", "up", "--brokers", "9" * 40], "brokers run past 65535"),
    (["publish", "task.created", "--workspace", "w", "--data", "[" * 100_000],
     "--data is nested too deep"),
    (["apikeys", "create", "--workspace", "\udced\udca0\udc80"], "cannot store this key"),
    (["webhooks", "show", "a\x1b[31m"], "a webhook id is 1 to 256 visible ASCII"),
    (["webhooks", "delete", "x" * 300], "a webhook id is 1 to 256 visible ASCII"),
    (["dev", "--receiver-port", "0"], "Invalid value for '--receiver-port'"),
])
def test_bad_arguments_give_one_line_and_non_zero_exit(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize("args, message", [
    (["publish", "task.bogus", "--workspace", "ws_1"], "unknown event type 'task.bogus'"),
    (["publish", "--file", "/nonexistent/events.jsonl"], "--file: No such file"),
    (["webhooks", "delete", "wh_1"], "cannot reach the API at http://127.0.0.1:9"),
    (["webhooks", "enable", "wh_1"], "cannot reach the API at http://127.0.0.1:9"),
    (["webhooks", "disable", "wh_1", "--reason", "x"], "cannot reach the API"),
    (["webhooks", "show", "wh_1"], "cannot reach the API"),
    (["webhooks", "test", "wh_1", "--event", "task.nope"], "--event: unknown event type"),
    (["event-types"], "cannot reach the API at http://127.0.0.1:9"),
    (["dlq", "replay", "--webhook", "wh_1", "--since", "yesterday"],
     "--since must be an ISO 8601 time"),
    (["apikeys", "create", "--workspace", " "], "--workspace must not be empty"),
    (["kafka", "up", "--timeout", "soon"], "Invalid value for '--timeout'"),
    (["kafka", "status"], "HOOKSTREAM_KAFKA_PORT='abc' is not a TCP port"),
    (["topics", "create"], "HOOKSTREAM_WEB_PORT must be a whole number"),
])
def test_errors_with_json_print_nothing_on_stdout(args: list[str], message: str) -> None:
    """The rule for every command: a failure is one line on stderr and a non-zero exit,
    --json or not; stdout stays empty, so a script never parses half an answer."""
    env = {**os.environ, "HOOKSTREAM_URL": "http://127.0.0.1:9",
           "HOOKSTREAM_API_KEY": "hsk_x_y"}
    if args[:2] == ["kafka", "status"]:
        env["HOOKSTREAM_KAFKA_PORT"] = "abc"
    if args[0] == "topics":
        env["HOOKSTREAM_WEB_PORT"] = "abc"
    result = run(*args, "--json", env=env)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize(("env", "message"), [
    ({"HOOKSTREAM_URL": "http://[::1"}, "HOOKSTREAM_URL is not a URL"),
    ({"HOOKSTREAM_API_KEY": "ключ"}, "HOOKSTREAM_API_KEY holds characters no key has"),
    ({"HOOKSTREAM_URL": "http://user:s3cr3tPW@127.0.0.1:9"}, "cannot reach the API at "
     "http://127.0.0.1:9"),
    ({"HOOKSTREAM_LOG_LEVEL": "garbage"}, "HOOKSTREAM_LOG_LEVEL must be one of"),
])
def test_bad_api_settings_are_one_line_without_secrets(env: dict[str, str],
                                                       message: str) -> None:
    result = run("webhooks", "list", env={**os.environ, "HOOKSTREAM_URL": "http://127.0.0.1:9",
                                          "HOOKSTREAM_API_KEY": "hsk_x_y", **env})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "s3cr3tPW" not in result.stderr


def test_an_unreachable_broker_is_one_line() -> None:
    """librdkafka logged ~600 lines while it retried, then a traceback came."""
    result = run("apikeys", "list", env={**os.environ,
                                         "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:1")


def test_bad_setting_is_one_line() -> None:
    result = run("topics", "create", env={**os.environ, "HOOKSTREAM_WEB_PORT": "abc"})
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: HOOKSTREAM_WEB_PORT must be a whole number, got 'abc'")


def test_publish_talks_to_the_real_broker(own_topics: dict[str, str]) -> None:
    env = own_topics
    published = run("publish", "task.created", "--workspace", "ws_1", "--data",
                    '{"id":"task_789","name":"Design homepage"}', env=env)
    assert published.returncode == 0, published.stderr
    assert "published task.created evt_" in published.stdout


def test_bulk_publish_validates_every_line_first(own_topics: dict[str, str],
                                                 tmp_path: Path) -> None:
    env = own_topics
    good = {"event": "task.created", "workspace_id": "ws", "timestamp": "2025-10-14T10:30:00Z",
            "data": {"id": "t"}}
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({**good, "data": {"id": f"t{i}"}})
                                for i in range(250)))
    published = run("publish", "--file", str(events), env=env)
    assert published.returncode == 0, published.stderr
    assert "published 250 events" in published.stdout
    described = json.loads(run("topics", "describe", "--json", env=env).stdout)
    task = next(t for t in described if t["topic"].endswith("domain.task"))
    assert task["exists"] and task["records"] == 250
    events.write_text(json.dumps(good) + "\n" + json.dumps({**good, "event": "task.nope"}))
    refused = run("publish", "--file", str(events), env=env)
    assert refused.returncode != 0
    assert refused.stderr.strip() == "error: line 2: field 'event': unknown event type 'task.nope'"
    described = json.loads(run("topics", "describe", "--json", env=env).stdout)
    assert next(t for t in described if t["topic"].endswith("domain.task"))["records"] == 250


def test_webhook_commands_without_an_api_say_so_in_one_line() -> None:
    env = {**os.environ, "HOOKSTREAM_URL": "http://127.0.0.1:9", "HOOKSTREAM_API_KEY": "hsk_x_y"}
    result = run("webhooks", "list", env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the API at http://127.0.0.1:9")


def test_kafka_status_reports_the_project_broker_state() -> None:
    result = run("kafka", "status")
    assert result.returncode in (0, 1)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip()


def _records(env: dict[str, str], placed: list[dict[str, Any]]) -> dict[tuple[str, int, int],
                                                                       dict[str, Any]]:
    """The events really at the topics, partitions and offsets a publish reported."""
    found = {}
    for topic in {p["topic"] for p in placed}:
        for message in read_to_end(env["KAFKA_BOOTSTRAP_SERVERS"], topic):
            found[(topic, message.partition(), message.offset())] = registry().decode(
                EVENT, message.value())
    return found


def test_publish_json_names_where_each_event_was_written(own_topics: dict[str, str],
                                                         tmp_path: Path) -> None:
    env = own_topics
    prefix = env["HOOKSTREAM_TOPIC_PREFIX"]
    one = run_json(env, "publish", "task.created", "--workspace", "ws_1", "--id", "evt_one",
                   "--data", '{"id": "task_1"}')
    assert {k: one[k] for k in ("event_id", "event", "workspace_id", "topic")} == {
        "event_id": "evt_one", "event": "task.created", "workspace_id": "ws_1",
        "topic": f"{prefix}domain.task"}
    record = _records(env, [one])[(one["topic"], one["partition"], one["offset"])]
    assert record["id"] == "evt_one" and record["data"]["id"] == "task_1"

    # Many: three workspaces (partitions) and two families (topics), and the same id, type
    # and workspace twice with different data: each line's report must be its own.
    lines: list[dict[str, Any]] = [{"id": f"evt_{i}", "event": event, "workspace_id": f"ws_{i % 3}",
              "timestamp": "2025-10-14T10:30:00Z", "data": {"id": f"d{i}"}}
             for i, event in enumerate(["task.created", "project.created"] * 6)]
    lines.append({**lines[0], "data": {"id": "again"}})
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(line) for line in lines))
    many = run_json(env, "publish", "--file", str(events))
    assert many["published"] == len(lines) == len(many["events"])
    found = _records(env, many["events"])
    assert len({(p["topic"], p["partition"], p["offset"]) for p in many["events"]}) == len(lines)
    assert len({p["partition"] for p in many["events"]}) > 1
    for line, placed in zip(lines, many["events"], strict=True):
        assert placed["event_id"] == line["id"] and placed["event"] == line["event"]
        assert placed["workspace_id"] == line["workspace_id"]
        assert placed["topic"] == f"{prefix}domain.{line['event'].split('.')[0]}"
        record = found[(placed["topic"], placed["partition"], placed["offset"])]
        assert (record["id"], record["data"]["id"]) == (line["id"], line["data"]["id"])


def test_webhook_commands_json_match_what_the_api_then_shows(dep: Deployment) -> None:
    env = api_env(dep)
    ws, path = f"ws_{_uid()}", f"/cli/{_uid()}"
    created = run_json(env, "webhooks", "create", "--workspace", ws, "--url",
                       dep.receiver.url(path), "--events", "task.created")
    wh = created["id"]
    assert created["workspace_id"] == ws and created["active"] is True
    assert created["secret"]  # shown once, in the JSON as on the terminal
    assert [w["id"] for w in run_json(env, "webhooks", "list", "--workspace", ws)] == [wh]

    updated = run_json(env, "webhooks", "update", wh, "--description", "from the CLI")
    assert updated["description"] == "from the CLI"
    shown = run_json(env, "webhooks", "show", wh)
    assert shown["description"] == "from the CLI" and "secret" not in shown

    rotated = run_json(env, "webhooks", "rotate-secret", wh)
    assert rotated["id"] == wh and rotated["secret"] != created["secret"]
    tested = run_json(env, "webhooks", "test", wh)
    assert tested["status"] == "success" and tested["response_code"] == 200
    (probe,) = dep.receiver.at(path)  # the API answered after the attempt
    assert json.loads(probe.body)["event"] == "webhook.test"
    assert verify(probe.body, probe.headers[SIGNATURE_HEADER.lower()], rotated["secret"])

    disabled = run_json(env, "webhooks", "disable", wh, "--reason", "maintenance")
    assert disabled == {"webhook_id": wh, "disabled": True, "active": False,
                        "reason": "maintenance"}
    shown = run_json(env, "webhooks", "show", wh)
    assert shown["active"] is False and shown["disabled_reason"] == "maintenance"
    wait_until(lambda: {"id": wh, "workspace_id": ws, "reason": "maintenance"}
               in run_json(env, "status")["disabled"], what="status listing the webhook")

    published = run_json(env, "publish", "task.created", "--workspace", ws,
                         "--data", '{"id": "task_held"}')
    dep.reader(topics.DLQ).wait_for(lambda ms: any(m.key() == wh.encode() for m in ms),
                                    what="the event held while disabled")
    (letter,) = run_json(env, "dlq", "list", "--webhook", wh)
    assert letter["event_id"] == published["event_id"] and letter["replayed"] is False

    enabled = run_json(env, "webhooks", "enable", wh)
    assert enabled == {"webhook_id": wh, "enabled": True, "active": True}
    assert run_json(env, "webhooks", "show", wh)["active"] is True

    replayed = run_json(env, "dlq", "replay", "--webhook", wh)
    assert replayed == {"webhook_id": wh, "replayed": 1, "already_replayed": 0,
                        "delivery_ids": [letter["delivery_id"]]}
    dep.receiver.wait_for(lambda _: len(dep.receiver.at(path)) == 2, what="the replay")
    delivered = dep.receiver.at(path)[1]
    assert delivered.headers[DELIVERY_HEADER.lower()] == letter["delivery_id"]
    assert json.loads(delivered.body)["id"] == published["event_id"]
    again = run_json(env, "dlq", "replay", "--webhook", wh)
    assert again == {"webhook_id": wh, "replayed": 0, "already_replayed": 1,
                     "delivery_ids": []}
    assert run_json(env, "dlq", "list", "--webhook", wh)[0]["replayed"] is True
    wait_until(lambda: any(d["id"] == letter["delivery_id"] and d["status"] == "success"
                           for d in run_json(env, "deliveries", wh)),
               what="the replayed delivery in the history")

    deleted = run_json(env, "webhooks", "delete", wh)
    assert deleted == {"webhook_id": wh, "deleted": True}
    gone = run("webhooks", "show", wh, "--json", env=env)
    assert gone.returncode != 0 and gone.stdout == ""
    assert gone.stderr.startswith("error: 404"), gone.stderr
    assert run_json(env, "webhooks", "list", "--workspace", ws) == []


def test_text_a_tenant_set_is_shown_as_it_is(dep: Deployment) -> None:
    """A `[/bold]` in one webhook's description made `webhooks list` fail for all, and an
    ESC sequence in it reached the operator's terminal."""
    env = {**api_env(dep), "COLUMNS": "400"}  # wide enough that no cell is cut
    ws = f"ws_[/bold]{_uid()}"
    hostile = "[/bold] [link=https://evil.example]x[/link] \x1b]0;pwned\x07\x1b[2J \u202eevil"
    wh = run_json(env, "webhooks", "create", "--workspace", ws, "--url",
                  dep.receiver.url(f"/cli/{_uid()}"), "--events", "task.created",
                  "--description", hostile)["id"]
    listed = run("webhooks", "list", "--workspace", ws, env=env)
    assert listed.returncode == 0 and ws in listed.stdout, listed.stderr
    shown = run("webhooks", "show", wh, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "[/bold] [link=https://evil.example]x[/link]" in shown.stdout
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J \\u202eevil" in shown.stdout


def test_a_webhook_id_names_that_webhook_only(dep: Deployment) -> None:
    """`webhooks delete a/../<id>` deleted <id>: the id went into the path unescaped."""
    env = api_env(dep)
    ws = f"ws_{_uid()}"
    wh = run_json(env, "webhooks", "create", "--workspace", ws, "--url",
                  dep.receiver.url(f"/cli/{_uid()}"), "--events", "task.created")["id"]
    for crafted in (f"nope/../{wh}", f"{wh}?x=1", f"{wh}#x", f"{wh}/"):
        result = run("webhooks", "delete", crafted, env=env)
        assert result.returncode == 1 and "404" in result.stderr, (crafted, result.stderr)
    refused = run("webhooks", "delete", "..", env=env)  # never an id: refused before a call
    assert refused.returncode == 2 and "not . or .." in refused.stderr, refused.stderr
    assert run_json(env, "webhooks", "show", wh)["id"] == wh


def test_apikeys_json_create_list_revoke_as_the_api_sees_them(dep: Deployment) -> None:
    env = api_env(dep)
    port = dep.workers[0].port
    ws = f"ws_{_uid()}"
    created = run_json(env, "apikeys", "create", "--workspace", ws, "--description", "ci")
    key = created["key"]
    assert key.startswith(f"hsk_{created['key_id']}_") and created["workspace_id"] == ws
    wait_until(lambda: call(port, "GET", "/v1/webhooks", key).status == 200,
               what="the new key accepted")
    assert run_json({**env, "HOOKSTREAM_API_KEY": key}, "webhooks", "list") == []
    assert run_json(env, "apikeys", "list", "--workspace", ws) == [{
        "key_id": created["key_id"], "workspace_id": ws, "description": "ci",
        "created_at": created["created_at"], "revoked_at": None}]

    revoked = run_json(env, "apikeys", "revoke", created["key_id"])
    assert {k: revoked[k] for k in ("key_id", "workspace_id", "revoked")} == {
        "key_id": created["key_id"], "workspace_id": ws, "revoked": True}
    wait_until(lambda: call(port, "GET", "/v1/webhooks", key).status == 401,
               what="the revoked key refused")
    (listed,) = run_json(env, "apikeys", "list", "--workspace", ws)
    assert listed["revoked_at"] == revoked["revoked_at"]


def test_topics_create_json_reports_what_exists(own_topics: dict[str, str]) -> None:
    states = run_json(own_topics, "topics", "create")
    assert states and all(s["created"] is False for s in states)  # the fixture made them
    described = {t["topic"]: t for t in run_json(own_topics, "topics", "describe")}
    assert {s["topic"] for s in states} == set(described)
    assert all(described[s["topic"]]["exists"] for s in states)


def test_kafka_up_and_down_json_leave_a_broker_they_did_not_start_alone(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    port = kafka_bootstrap.rpartition(":")[2]
    assert kafka_bootstrap == f"127.0.0.1:{port}", "local Kafka listens on 127.0.0.1"
    # A home of its own (no pid file: the broker is not ours), and no pom: should the
    # broker stop answering meanwhile, `up` fails instead of starting another.
    env = {**os.environ, "HOOKSTREAM_HOME": str(tmp_path), "HOOKSTREAM_KAFKA_PORT": port,
           "HOOKSTREAM_KAFKA_POM": str(tmp_path / "no-pom.xml")}
    up = run_json(env, "kafka", "up")
    assert {k: up[k] for k in ("status", "running", "pid", "bootstrap")} == {
        "status": "already_running", "running": True, "pid": None,
        "bootstrap": kafka_bootstrap}
    assert "not ours" in up["detail"]
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
    down = run_json(env, "kafka", "down")
    assert {k: down[k] for k in ("status", "running", "pid", "bootstrap")} == {
        "status": "not_running", "running": False, "pid": None, "bootstrap": kafka_bootstrap}
    status = run("kafka", "status", "--json", env=env)
    assert status.returncode == 1  # a "no" is an answer: printed, and exit 1
    assert json.loads(status.stdout)["running"] is False
    assert AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).brokers
