"""The hookstream command: bad arguments get one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from streams.kafka.admin import create_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True,
                          text=True, timeout=60, env=env or dict(os.environ))


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
    (["webhooks", "frobnicate"], "No such command 'frobnicate'"),
    (["kafka", "up", "--timeout", "soon"], "Invalid value for '--timeout'"),
])
def test_bad_arguments_give_one_line_and_non_zero_exit(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


def test_bad_setting_is_one_line() -> None:
    result = run("topics", "create", env={**os.environ, "HOOKSTREAM_WEB_PORT": "abc"})
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: HOOKSTREAM_WEB_PORT must be a whole number, got 'abc'")


def test_publish_talks_to_the_real_broker(kafka_bootstrap: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "HOOKSTREAM_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}."}
    create_topics(Settings.from_env(env))
    published = run("publish", "task.created", "--workspace", "ws_1", "--data",
                    '{"id":"task_789","name":"Design homepage"}', env=env)
    assert published.returncode == 0, published.stderr
    assert "published task.created evt_" in published.stdout


def test_bulk_publish_validates_every_line_first(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "HOOKSTREAM_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}."}
    create_topics(Settings.from_env(env))
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
