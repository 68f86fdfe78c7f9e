"""A real HTTP receiver on loopback whose answers a test can set, recording every request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops SYNs when a worker opens many connections at once,
    # which looks like a slow receiver. Real servers listen with a deep backlog.
    request_queue_size = 512

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed worker resets its connections; that is the test, not a failure.
        return None


class Receiver:
    """`status[path]` sets the answer for a path (default 200); `delay[path]` stalls it."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        #: A path whose requests are held until its event is set (a hanging endpoint the
        #: test lets go of when it has seen what it waits for).
        self.hold: dict[str, threading.Event] = {}
        #: Answer 500 to the first N requests of a path, then `status` (or 200).
        self.fail_first: dict[str, int] = {}
        #: Answers (status, extra headers) to a path's first requests, in order; then the
        #: above. E.g. [(429, {"Retry-After": "3"})]: busy once, asking for 3 s.
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        #: Requests being answered now, and the most ever at once, by the path's first
        #: segment ("/a/wh_1" counts under "a").
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                group = self.path.split("/")[1] if self.path.count("/") > 1 else ""
                with receiver._lock:
                    now = receiver.in_flight[group] = receiver.in_flight.get(group, 0) + 1
                    receiver.most_in_flight[group] = max(
                        now, receiver.most_in_flight.get(group, 0))
                stall = receiver.delay.get(self.path, 0.0)
                if stall:
                    time.sleep(stall)  # simulates a slow endpoint, not synchronisation
                held = receiver.hold.get(self.path)
                if held is not None:
                    held.wait(60)
                with receiver._lock:
                    receiver.in_flight[group] -= 1
                    seen = sum(1 for r in receiver.requests if r.path == self.path)
                    code = (500 if seen < receiver.fail_first.get(self.path, 0)
                            else receiver.status.get(self.path, 200))
                    scripted = receiver.script.get(self.path, [])
                    extra: dict[str, str] = {}
                    if seen < len(scripted):
                        code, extra = scripted[seen]
                    receiver.requests.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                        time.time()))
                    receiver._changed.notify_all()
                reply = b"OK" if code < 300 else b"nope"
                self.send_response(code)
                if 300 <= code < 400:  # a redirect a careless client would follow
                    self.send_header("Location", self.path + "/followed")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0,
                 what: str = "condition") -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self.requests)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; "
                        f"received {len(self.requests)} requests")
                self._changed.wait(remaining)
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
