"""One Kafka JVM (a KRaft node, broker and controller) under its own directory.

The directory holds data/ (survives restarts), logs/ (server.log, kafka.out),
{server,log4j2}.properties (rewritten before every start) and kafka.pid, the only pid
ever signalled, and only while it is alive and runs kafka.Kafka on this server.properties.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import (
    LocalKafkaError,
    log,
    render_log4j2_properties,
    render_server_properties,
    tail,
)

POLL = 0.25
#: The garbage collector's settings Kafka's own start scripts give a broker
#: (kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS). Without the 20 ms pause goal, G1
#: aims at 200 ms: on two shared cores its young collections took up to 63 ms (jstat), every
#: produce and fetch waited for them, and `make bench` (b)'s worst clusters began at them.
GC_OPTIONS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
              "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent")


@dataclass(frozen=True)
class NodeStatus:
    """One node as `kafka status --json` lists it."""

    id: int
    pid: int | None
    bootstrap: str
    running: bool


class KafkaNode:
    """Start, stop and kill one node; whether it runs is judged by its pid file only."""

    def __init__(self, node_id: int, directory: Path, libs: Path, port: int,
                 controller_port: int, heap: str,
                 jvm_options: tuple[str, ...] = ()) -> None:
        self.id, self.dir, self.libs = node_id, directory, libs
        self.port, self.controller_port, self.heap = port, controller_port, heap
        self.data, self.logs = directory / "data", directory / "logs"
        self.props, self.log4j = directory / "server.properties", directory / "log4j2.properties"
        self.pid_file = directory / "kafka.pid"
        self.jvm_options = jvm_options
        self.bootstrap = f"127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None  # set when this process started it
        self._started = 0.0

    def java(self, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
        # log4j2's own shutdown hook would stop logging mid-shutdown and hide how it ended.
        log4j = (f"-Dlog4j2.configurationFile={self.log4j}", "-Dlog4j2.shutdownHookEnabled=false")
        return ["java", *jvm, *log4j, "-cp", f"{self.libs}/*", *args]

    def is_ours(self, pid: int) -> bool:
        """Alive AND kafka.Kafka on *our* server.properties: a recycled pid is never signalled."""
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return False  # our own child exited (poll() also reaps the zombie)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:  # no procfs (macOS)
            cmd = subprocess.run(["ps", "-p", str(pid), "-o", "command="],
                                 capture_output=True, text=True, check=False).stdout
        except (OSError, UnicodeDecodeError):
            return False
        return "kafka.Kafka" in cmd and str(self.props) in cmd

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> NodeStatus:
        pid = self.recorded_pid()
        running = pid is not None and self.is_ours(pid)
        return NodeStatus(self.id, pid if running else None, self.bootstrap, running)

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").exists()

    def write_config(self, voters: str | None = None, brokers: int = 1) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.props.write_text(render_server_properties(
            self.port, self.controller_port, self.data, self.id, voters, brokers))
        self.log4j.write_text(render_log4j2_properties(self.logs))

    def format_command(self, cluster_id: str) -> list[str]:
        """KRaft refuses to start on an unformatted log dir (first use only)."""
        return self.java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                         "-c", str(self.props), jvm=self.jvm_options)

    def broker_command(self) -> list[str]:
        # -Xms as -Xmx, as Kafka's own scripts and docs run a broker: a heap that starts at
        # half its size keeps G1's young generation small, so it collected more often.
        jvm = (f"-Xmx{self.heap}", f"-Xms{self.heap}", *GC_OPTIONS,
               *self.jvm_options, f"-Dkafka.logs.dir={self.logs}")
        return self.java("kafka.Kafka", str(self.props), jvm=jvm)

    def spawn(self) -> None:
        """Start the JVM in the background (its own session: it survives the CLI exiting
        or a Ctrl-C there) and record its pid; `check_alive` tells whether it died since."""
        self._started, out = time.time(), self.logs / "kafka.out"
        with out.open("wb") as sink:
            self._proc = subprocess.Popen(
                self.broker_command(), stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n")

    @property
    def spawned_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def check_alive(self) -> None:
        """LocalKafkaError, with the end of its log, if the JVM `spawn` started has exited."""
        if self._proc is None or (code := self._proc.poll()) is None:
            return
        self.pid_file.unlink(missing_ok=True)
        server_log, out = self.logs / "server.log", self.logs / "kafka.out"
        fresh = server_log.exists() and server_log.stat().st_mtime >= self._started
        logf = server_log if fresh else out
        raise LocalKafkaError(f"Kafka node {self.id} exited with code {code} while starting; "
                              f"see {logf}:\n" + tail(logf.read_text(errors="replace"), 10))

    def gone(self, pid: int) -> bool:
        """Exited for real: a SIGKILLed JVM loses its cmdline while it still holds its ports."""
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is not None
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, PermissionError):
            return True
        except FileNotFoundError:  # raced with exit, or no procfs (macOS: launchd reaps at once)
            return Path("/proc/self").exists()
        return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")  # zombie: fds already closed

    def wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.gone(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)
        return True

    def terminate(self) -> int | None:
        """SIGTERM, so Kafka closes its logs cleanly (fast restart); the pid signalled."""
        pid = self.status().pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return pid

    def finish_stop(self, pid: int, timeout: float) -> None:
        """After `terminate`: wait for the exit, SIGKILL after `timeout`; drop the pid file."""
        try:
            if not self.wait_gone(pid, timeout) and self.is_ours(pid):
                log.warning("Kafka node %s (pid %s) still runs after SIGTERM; killing",
                            self.id, pid)
                os.kill(pid, signal.SIGKILL)
            self.wait_gone(pid, 10.0)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop it cleanly; False when it was not running."""
        pid = self.terminate()
        if pid is None:
            return False
        self.finish_stop(pid, timeout)
        return True

    def kill(self) -> None:
        """SIGKILL without shutdown, for crash tests; the pid file stays, as after a real crash."""
        pid = self.status().pid
        if pid is None:
            raise LocalKafkaError(f"nothing to kill: Kafka node {self.id} is not running")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.wait_gone(pid, 10.0)
