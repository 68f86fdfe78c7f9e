"""README, "Delivery guarantees": at most HOOKSTREAM_DELIVERY_CONCURRENCY attempts in flight
per worker, at most HOOKSTREAM_PER_WEBHOOK_CONCURRENCY per webhook.

A real worker delivers to a receiver on loopback that holds every request open until the
test releases it. The receiver counts the requests it holds, per webhook (path) and in all,
and keeps the most it ever held. A held request is counted from its arrival until the test
releases it, before it is answered: the worker's attempt lasts at least that long, so the
receiver's count never exceeds the worker's attempts in flight, and a count over a cap is
a cap broken.

The test releases one request at a time, and only once the receiver holds as many as the
caps allow for what is left to deliver: min(worker cap, sum over webhooks of min(webhook
cap, jobs left)). So each cap is reached (the wait for it would time out otherwise), and
after every release the worker has the chance to exceed it, with jobs waiting; a request
over a cap fails the wait at once and shows in the maxima. The per-workspace cap is set
above the worker's, so it never binds here (tests/integration/test_fair_share.py covers it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ..support.pipeline import SECRET, Deployment, wait_webhook_state
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

WORKER_CAP = 6
WEBHOOK_CAP = 2

DEPLOYMENT: DeploymentSpec = {"workers": 1, "env": {
    "HOOKSTREAM_DELIVERY_CONCURRENCY": str(WORKER_CAP),
    "HOOKSTREAM_PER_WEBHOOK_CONCURRENCY": str(WEBHOOK_CAP),
    # Above the worker's: the one workspace here may take every slot, this cap never binds.
    "HOOKSTREAM_PER_WORKSPACE_CONCURRENCY": str(2 * WORKER_CAP),
    # Held requests are released well within these: no attempt times out, none is deferred.
    "HOOKSTREAM_DELIVERY_TIMEOUT": "60",
    "HOOKSTREAM_DEFER_AFTER": "300",
}}

#: A request nobody releases is answered after this long (recorded, and failing the test),
#: so a failed test leaves no receiver thread behind. Never reached by a passing test.
HOLD_LIMIT_S = 90.0
WAIT_S = 30.0


@dataclass
class _Held:
    path: str
    delivery_id: str
    released: threading.Event = field(default_factory=threading.Event)


class HoldingReceiver:
    """Holds every POST open until `release_oldest`; counts what it holds."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._open: deque[_Held] = deque()  # arrival order
        self.open_by_path: dict[str, int] = defaultdict(int)
        self.most_by_path: dict[str, int] = defaultdict(int)
        self.most_total = 0
        #: (path, delivery id) of every request released, in release order.
        self.released: list[tuple[str, str]] = []
        self.expired: list[tuple[str, str]] = []
        self._letting_go = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                held = _Held(self.path, self.headers.get("X-Webhook-Delivery", ""))
                receiver._arrived(held)
                if not held.released.wait(HOLD_LIMIT_S):
                    receiver._expire(held)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return None

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _arrived(self, held: _Held) -> None:
        with self._changed:
            if self._letting_go:
                held.released.set()
                return
            self._open.append(held)
            self.open_by_path[held.path] += 1
            self.most_by_path[held.path] = max(self.most_by_path[held.path],
                                               self.open_by_path[held.path])
            self.most_total = max(self.most_total, len(self._open))
            self._changed.notify_all()

    def _expire(self, held: _Held) -> None:
        with self._changed:
            if held in self._open:
                self._open.remove(held)
                self.open_by_path[held.path] -= 1
                self.expired.append((held.path, held.delivery_id))
                self._changed.notify_all()

    def total_open(self) -> int:
        return len(self._open)

    def release_oldest(self) -> None:
        with self._changed:
            held = self._open.popleft()
            self.open_by_path[held.path] -= 1
            self.released.append((held.path, held.delivery_id))
            held.released.set()
            self._changed.notify_all()

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """Until `condition` holds (checked on every arrival), or fail at the deadline."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {WAIT_S}s waiting for {what}: holding "
                        f"{dict(self.open_by_path)}, released {len(self.released)}")
                self._changed.wait(remaining)

    def close(self) -> None:
        with self._changed:
            self._letting_go = True
            while self._open:
                self._open.popleft().released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    holding = HoldingReceiver()
    try:
        yield holding
    finally:
        holding.close()


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _webhooks(dep: Deployment, receiver: HoldingReceiver, workspace: str, count: int,
              event: str) -> list[str]:
    paths = []
    for n in range(count):
        wh = f"wh_{n}_{_uid()}"
        path = f"/hold/{wh}"
        dep.command("create", wh, workspace_id=workspace, webhook={
            "url": receiver.url(path), "events": [event], "secret": SECRET, "active": True})
        paths.append((wh, path))
    for wh, _ in paths:
        wait_webhook_state(dep, wh, {"active": True})
    return [path for _, path in paths]


def _deliver_under_caps(receiver: HoldingReceiver, jobs: dict[str, int]) -> None:
    """Release the held requests one by one, each only once the receiver holds all that
    the caps allow, until every job of `jobs` (path -> count) has been released."""

    def within_caps() -> None:
        over = {p: n for p, n in receiver.most_by_path.items() if n > WEBHOOK_CAP}
        if over or receiver.most_total > WORKER_CAP:
            raise AssertionError(f"over a cap: most held {receiver.most_total} in all "
                                 f"(cap {WORKER_CAP}), per webhook {over} (cap {WEBHOOK_CAP})")

    while len(receiver.released) < sum(jobs.values()):
        done: dict[str, int] = defaultdict(int)
        for path, _ in receiver.released:
            done[path] += 1
        left = {path: count - done[path] for path, count in jobs.items()}
        allowed = min(WORKER_CAP, sum(min(WEBHOOK_CAP, n) for n in left.values()))

        def saturated(left: dict[str, int] = left, allowed: int = allowed) -> bool:
            within_caps()
            return receiver.total_open() == allowed and all(
                receiver.open_by_path[path] <= min(WEBHOOK_CAP, n) for path, n in left.items())

        receiver.wait(saturated, f"{allowed} requests held (jobs left: {left})")
        receiver.release_oldest()
    within_caps()


def test_one_webhook_gets_its_own_slots_and_no_more(dep: Deployment,
                                                    receiver: HoldingReceiver) -> None:
    """The webhook cap binds alone: the worker has slots to spare, the webhook waits."""
    workspace = f"ws_{_uid()}"
    (path,) = _webhooks(dep, receiver, workspace, 1, "task.created")
    jobs = 8
    for n in range(jobs):
        dep.publish("task.created", workspace, {"id": f"task_{n}"})

    _deliver_under_caps(receiver, {path: jobs})

    assert receiver.most_by_path[path] == WEBHOOK_CAP
    assert receiver.most_total == WEBHOOK_CAP  # nothing else was sent meanwhile
    delivered = [d for p, d in receiver.released if p == path]
    assert len(delivered) == len(set(delivered)) == jobs
    assert receiver.expired == []


def test_the_worker_holds_its_cap_in_all_and_each_webhook_its_own(
        dep: Deployment, receiver: HoldingReceiver) -> None:
    """Five webhooks of one workspace, six events each: ten slots wanted by the webhooks'
    caps, six given by the worker's."""
    workspace = f"ws_{_uid()}"
    paths = _webhooks(dep, receiver, workspace, 5, "project.created")
    assert len(paths) * WEBHOOK_CAP > WORKER_CAP  # the worker's cap is the one that binds
    events = 6
    for n in range(events):
        dep.publish("project.created", workspace, {"id": f"project_{n}"})

    _deliver_under_caps(receiver, dict.fromkeys(paths, events))

    assert receiver.most_total == WORKER_CAP
    assert max(receiver.most_by_path[p] for p in paths) == WEBHOOK_CAP
    assert all(receiver.most_by_path[p] <= WEBHOOK_CAP for p in paths)
    for path in paths:
        delivered = [d for p, d in receiver.released if p == path]
        assert len(delivered) == len(set(delivered)) == events
    assert receiver.expired == []
