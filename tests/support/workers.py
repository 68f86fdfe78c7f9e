"""Real worker processes (`python -m streams worker`) for integration tests."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Where a worker's web port is picked: below the kernel's ephemeral range (32768-60999 on
#: Linux), which every outgoing connection draws from. A port picked by binding port 0 is
#: in that range, and a connection of another process could take it before the worker
#: binds it ("address already in use": seen in CI).
_WEB_PORTS = range(20000, 32000)


def free_port() -> int:
    while True:
        port = random.choice(_WEB_PORTS)
        if bindable(port, "0.0.0.0"):  # where the worker listens
            return port


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Is this port free now on `host` (loopback: for a broker of a test's own)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class WorkerProcess:
    def __init__(self, env: dict[str, str], home: Path, name: str,
                 wrapper: list[str] | None = None, cwd: Path | None = None,
                 hookstream_home: Path | None = None) -> None:
        #: A command the worker runs under, e.g. one that gives it its own /etc/hosts.
        self.wrapper = wrapper or []
        #: The worker's working directory (default: the test's).
        self.cwd = cwd
        self.port = free_port()
        self.name = name
        #: The log stays in `home`, opened by the test: the worker may not be able to write.
        self.log_path = home / f"{name}.log"
        #: HOOKSTREAM_HOME as the worker sees it (default: `home`).
        self.hookstream_home = hookstream_home or home
        self.env = {**env, "HOOKSTREAM_WEB_PORT": str(self.port),
                    "HOOKSTREAM_HOME": str(self.hookstream_home)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "streams", "worker"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd,
        )
        log.close()
        return self

    def readiness(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return dict(json.loads(r.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.process.returncode}:"
                                     f"\n{self.log_tail()}")
            state = self.readiness()
            if state is not None and state.get("ready"):
                return
            time.sleep(0.2)  # polling interval of a readiness probe, not a stand-in
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        """The exit code of a worker that should stop by itself; fails at the deadline."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.name} still running after {timeout}s:\n"
                                 f"{self.log_tail()}") from None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
