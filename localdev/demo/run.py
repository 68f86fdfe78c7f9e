"""`hookstream dev`: everything README's first command promises, stopped by Ctrl-C.

Brings up the local Kafka, creates the topics, starts a worker and the verifying demo
receiver, creates a demo webhook and publishes a few events; the receiver prints each
verified delivery. Stops what it started (the broker only if it started it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from streams.core.timeutil import iso_from_ms, now_ms
from streams.kafka.admin import create_topics
from streams.kafka.producer import Publisher
from streams.settings import Settings
from streams.subscriptions.commands import Command, generate_secret

from ..kafka import LocalKafka

DEMO_WORKSPACE = "ws_demo"


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(receiver_port: int, events: int) -> None:
    # Ctrl-C, and SIGTERM from a supervisor, both stop everything this started.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    env = {**os.environ, "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1"}
    os.environ.update(env)
    settings = Settings.from_env()
    kafka = LocalKafka.from_env()
    started_at = time.monotonic()
    status, started_kafka = kafka.up()
    print(f"kafka: {status.detail} ({time.monotonic() - started_at:.1f}s)", flush=True)
    create_topics(settings)
    secret = generate_secret()
    worker_log_path = settings.home / "dev-worker.log"
    worker_log = worker_log_path.open("ab")
    print(f"worker: logging to {worker_log_path}", flush=True)
    children = [
        subprocess.Popen([sys.executable, "-m", "localdev.demo.receiver",
                          "--port", str(receiver_port)], env={**env, "WEBHOOK_SECRET": secret}),
        subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                         stdout=worker_log, stderr=subprocess.STDOUT),
    ]
    worker_log.close()
    try:
        publisher = Publisher(settings)
        webhook_id = f"wh_demo_{uuid.uuid4().hex[:8]}"
        publisher.send_command(Command(
            op="create", webhook_id=webhook_id, workspace_id=DEMO_WORKSPACE,
            webhook={"url": f"http://127.0.0.1:{receiver_port}/webhooks",
                     "events": ["task.*", "project.archived"], "secret": secret},
        ))
        for i in range(events):
            publisher.publish_event({
                "event": "task.created", "workspace_id": DEMO_WORKSPACE,
                "timestamp": iso_from_ms(now_ms()),
                "data": {"id": f"task_{i}", "name": f"Demo task {i}", "status": "todo",
                         "priority": "high", "project_id": "proj_123"},
            })
        publisher.publish_event({
            "event": "project.archived", "workspace_id": DEMO_WORKSPACE,
            "timestamp": iso_from_ms(now_ms()),
            "data": {"id": "proj_123", "name": "Homepage", "status": "archived"},
        })
        publisher.flush()
        print(f"demo: webhook {webhook_id} -> 127.0.0.1:{receiver_port}; published "
              f"{events + 1} events. Watch the receiver lines; Ctrl-C stops.", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if started_kafka:
            kafka.down()
            print("kafka: stopped", flush=True)
