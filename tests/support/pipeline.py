"""One isolated deployment for a test module: its own topic prefix, workers and receiver."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from streams.core.secretbox import generate_master_key
from streams.core.timeutil import iso_from_ms, now_ms
from streams.kafka.admin import create_topics, delete_topics
from streams.kafka.producer import Publisher
from streams.settings import Settings
from streams.subscriptions.commands import Command

from .kafka import TopicReader
from .receiver import Receiver
from .workers import WorkerProcess

SECRET = "whsec_integration_secret_0123456789"


class Deployment:
    def __init__(self, bootstrap: str, home: Path, **overrides: str) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        self.home = home
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HOOKSTREAM_TOPIC_PREFIX": self.prefix,
            "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1",
            "HOOKSTREAM_PARTITIONS": "3",
            "HOOKSTREAM_DELIVERY_TIMEOUT": "5",
            "HOOKSTREAM_MASTER_KEY": generate_master_key("test1"),
            "HOOKSTREAM_ADMIN_KEY": f"admin_{uuid.uuid4().hex}",
            **overrides,
        }
        self.settings = Settings.from_env(self.env)
        create_topics(self.settings)
        self.publisher = Publisher(self.settings)
        self.receiver = Receiver()
        self.workers: list[WorkerProcess] = []
        self._readers: list[TopicReader] = []
        self._closed = False

    def start_worker(self, wait: bool = True, wrapper: list[str] | None = None,
                     env: dict[str, str] | None = None) -> WorkerProcess:
        """A worker of this deployment; `env` adds settings of its own."""
        worker = WorkerProcess({**self.env, **(env or {})}, self.home,
                               f"worker{len(self.workers) + 1}", wrapper).start()
        self.workers.append(worker)
        if wait:
            try:
                worker.wait_ready()
            except BaseException:
                # A fixture that fails here never reaches its teardown: stop what it started.
                self.close()
                raise
        return worker

    def start_workers(self, envs: list[dict[str, str]]) -> list[WorkerProcess]:
        """One worker per entry of `envs` (its own settings), started together (they join
        the groups at once); returns once all are ready at the same time. Each ready in
        turn was not enough: the first could be ready before a later one's join, and in a
        rebalance again when the last was ready (a /readyz 503 on worker 1 in a make test)."""
        started = [self.start_worker(wait=False, env=env) for env in envs]
        deadline = time.monotonic() + 90.0
        while True:
            for worker in started:
                worker.wait_ready()
            if all((worker.readiness() or {}).get("ready") for worker in started):
                return started
            if time.monotonic() > deadline:
                raise AssertionError("the workers were never all ready at once")

    def reader(self, topic: str) -> TopicReader:
        reader = TopicReader(self.settings.bootstrap_servers, self.settings.topic(topic))
        self._readers.append(reader)
        return reader

    def command(self, op: str, webhook_id: str, **kwargs: Any) -> None:
        self.publisher.send_command(Command(op=op, webhook_id=webhook_id, **kwargs))
        self.publisher.flush()

    def create_webhook(self, webhook_id: str, workspace: str, path: str, events: list[str],
                       active: bool = True, secret: str = SECRET) -> None:
        self.command("create", webhook_id, workspace_id=workspace, webhook={
            "url": self.receiver.url(path), "events": events, "secret": secret,
            "active": active})

    def publish(self, event_type: str, workspace: str, data: dict[str, Any],
                event_id: str | None = None) -> str:
        event = self.publisher.publish_event({
            "id": event_id or f"evt_{uuid.uuid4().hex[:12]}", "event": event_type,
            "workspace_id": workspace, "timestamp": iso_from_ms(now_ms()), "data": data})
        self.publisher.flush()
        return event.id

    def close(self) -> None:
        """Stop everything and delete the topics; once, however often it is called."""
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            worker.stop()
        for reader in self._readers:
            reader.close()
        self.receiver.close()
        # Left behind, a suite's 2,000 topics slow the broker for every later test.
        delete_topics(self.settings)


def wait_webhook_state(deployment: Deployment, webhook_id: str, expect: dict[str, Any] | None,
                       timeout: float = 30.0) -> None:
    """Wait until every worker's view shows the webhook with these fields (None: gone)."""
    import json
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    for worker in deployment.workers:
        while True:
            url = f"http://127.0.0.1:{worker.port}/internal/subscriptions/{webhook_id}"
            request = urllib.request.Request(url, headers={
                "Authorization": f"Bearer {deployment.env['HOOKSTREAM_ADMIN_KEY']}"})
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    state: dict[str, Any] | None = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                state = None if exc.code == 404 else {"error": exc.code}
            except OSError:
                state = {"error": "unreachable"}
            if expect is None and state is None:
                break
            if expect is not None and state is not None and all(
                    state.get(k) == v for k, v in expect.items()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{worker.name}: webhook {webhook_id} is {state}, "
                                     f"expected {expect}")
            time.sleep(0.1)  # polling interval of the probe
