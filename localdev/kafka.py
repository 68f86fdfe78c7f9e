"""Run a real single-node Apache Kafka 4 (KRaft, broker+controller in one JVM) without Docker.

Why: local dev and crash tests need a genuine broker (transactions, consumer groups, restarts),
and Docker is not always there. Jars come from Maven Central via deploy/kafka/pom.xml; all state
lives under ``home``: kafka-libs/ (jars), kafka/data/ (survives restarts), kafka/logs/
(server.log, kafka.out), kafka/{server,log4j2}.properties (rewritten on every ``up``),
kafka/kafka.pid (the only pid ever signalled) and kafka/cluster.id.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # librdkafka's connect-refused noise must not hit stderr

_POLL = 0.25


@dataclass(frozen=True)
class KafkaStatus:
    """Snapshot of the local broker, shaped for a one-line CLI answer."""

    running: bool
    pid: int | None
    bootstrap: str
    home: Path
    detail: str


class LocalKafkaError(Exception):
    """Why the local broker could not come up or go down; the message is one human line."""


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """Single-node KRaft config; a pure function so the listener/quorum wiring is testable."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        # One node: every internal topic must be satisfiable by a single replica.
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",  # no 3 s pause before the first assignment
        "auto.create.topics.enable=false",  # topics are created explicitly; a typo must fail
        "log.retention.hours=24",  # local dev: bound disk use
        "log.retention.check.interval.ms=60000",
        # Kafka 4.0 refuses to re-register a restarted node until its old session expires
        # (KAFKA-19130, fixed in 4.1): 9 s by default, most of a restart. Raise if it fences.
        "broker.heartbeat.interval.ms=500",
        "broker.session.timeout.ms=3000",
        "",
    ])


def render_log4j2_properties(log_dir: Path) -> str:
    """Broker logs go to a size-capped file, not to the terminal that ran ``up``."""
    quiet = ["kafka.request.logger", "kafka.network.RequestChannel$", "kafka.authorizer.logger"]
    a = "appender.file"
    lines = [
        "status = warn",
        f"{a}.type = RollingFile", f"{a}.name = FILE",
        f"{a}.fileName = {log_dir / 'server.log'}", f"{a}.filePattern = {log_dir}/server.log.%i",
        f"{a}.layout.type = PatternLayout", f"{a}.layout.pattern = [%d] %p %m (%c)%n",
        f"{a}.policies.type = Policies", f"{a}.policies.size.type = SizeBasedTriggeringPolicy",
        f"{a}.policies.size.size = 20MB",
        f"{a}.strategy.type = DefaultRolloverStrategy", f"{a}.strategy.max = 3",
        "rootLogger.level = INFO", "rootLogger.appenderRef.file.ref = FILE",
    ]
    for i, name in enumerate(quiet):
        lines += [f"logger.q{i}.name = {name}", f"logger.q{i}.level = WARN"]
    return "\n".join(lines) + "\n"


def _heap_mb(heap: str) -> int:
    """Parse 512m / 1g up front, so -Xms never exceeds -Xmx (the JVM refuses to start)."""
    h = heap.strip().lower()
    if len(h) >= 2 and h[:-1].isdigit() and h[-1] in "mg":
        return int(h[:-1]) * (1024 if h[-1] == "g" else 1)
    raise LocalKafkaError(f"heap size {heap!r} is not like '512m' or '1g'")


def _tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers_as_broker(bootstrap: str, timeout: float) -> bool:
    """True only when a metadata request round-trips and names at least one broker."""
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap}, logger=log)
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


class LocalKafka:
    """Start/stop one local broker whose identity is the pid file under ``home/kafka``."""

    def __init__(self, home: Path = Path(".hookstream"), port: int = 9092,
                 controller_port: int = 9093, heap: str = "512m", pom: Path | None = None) -> None:
        self.home, self.port, self.controller_port, self.heap = home, port, controller_port, heap
        self._heap_mb = _heap_mb(heap)
        env_pom = os.environ.get("HOOKSTREAM_KAFKA_POM")
        repo_pom = Path(__file__).resolve().parents[1] / "deploy/kafka/pom.xml"
        self.pom = (pom or (Path(env_pom) if env_pom else repo_pom)).resolve()
        root = home.resolve()  # absolute: these paths end up in java command lines and configs
        self.libs, self.dir = root / "kafka-libs", root / "kafka"
        self.data, self.logs = self.dir / "data", self.dir / "logs"
        self.props, self.log4j = self.dir / "server.properties", self.dir / "log4j2.properties"
        self.pid_file, self.cluster_file = self.dir / "kafka.pid", self.dir / "cluster.id"
        self.bootstrap = f"127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None  # set when this process started the JVM

    @classmethod
    def from_env(cls) -> LocalKafka:
        """Build from HOOKSTREAM_* variables so the CLI and tests share one configuration path."""
        def port(name: str, default: int) -> int:
            raw = os.environ.get(name, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise LocalKafkaError(f"{name}={raw!r} is not a TCP port")
            return int(raw)
        return cls(home=Path(os.environ.get("HOOKSTREAM_HOME", ".hookstream")),
                   port=port("HOOKSTREAM_KAFKA_PORT", 9092),
                   controller_port=port("HOOKSTREAM_KAFKA_CONTROLLER_PORT", 9093),
                   heap=os.environ.get("HOOKSTREAM_KAFKA_HEAP", "512m"))

    def _java(self, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
        # log4j2's own shutdown hook would stop logging mid-shutdown and hide how it ended.
        log4j = (f"-Dlog4j2.configurationFile={self.log4j}", "-Dlog4j2.shutdownHookEnabled=false")
        return ["java", *jvm, *log4j, "-cp", f"{self.libs}/*", *args]

    def ensure_jars(self) -> Path:
        """Download the Kafka classpath once; a half-finished download never counts as done."""
        if any(self.libs.glob("kafka_2.13-*.jar")):
            return self.libs
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise LocalKafkaError(f"'{tool}' is not on PATH; local Kafka needs JDK 17+, Maven")
        if not self.pom.is_file():
            raise LocalKafkaError(f"Kafka pom not found at {self.pom} (set HOOKSTREAM_KAFKA_POM)")
        tmp = self.libs.with_name("kafka-libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("downloading Kafka jars via %s", self.pom)
        cmd = ["mvn", "-q", "-B", "-f", str(self.pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            raise LocalKafkaError(f"mvn could not fetch the Kafka jars (exit {res.returncode}):\n"
                                  + _tail(res.stdout + res.stderr, 15))
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        return self.libs

    def _is_ours(self, pid: int) -> bool:
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

    def status(self) -> KafkaStatus:
        """Judge by the pid file only; a stale pid file reads as not running (and is kept)."""
        try:
            pid: int | None = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        where = f"data in {self.home / 'kafka'}"
        if pid is not None and self._is_ours(pid):
            detail = f"up (pid {pid}) at {self.bootstrap}, {where}"
            return KafkaStatus(True, pid, self.bootstrap, self.home, detail)
        stale = f" (stale pid file: pid {pid} is not our broker)" if pid is not None else ""
        return KafkaStatus(False, None, self.bootstrap, self.home, f"not running{stale}, {where}")

    def up(self, timeout: float = 90.0) -> tuple[KafkaStatus, bool]:
        """Make a broker answer at ``bootstrap``; returns (status, started_now). Idempotent."""
        st = self.status()
        if st.running:
            return st, False
        self.pid_file.unlink(missing_ok=True)
        if _port_open(self.port):
            if not _answers_as_broker(self.bootstrap, 5.0):
                raise LocalKafkaError(f"port {self.port} is taken by something that is not Kafka")
            detail = f"a broker already answers at {self.bootstrap} (not ours; left alone)"
            return KafkaStatus(True, None, self.bootstrap, self.home, detail), False
        if _port_open(self.controller_port):
            raise LocalKafkaError(f"controller port {self.controller_port} is already in use")
        self.ensure_jars()
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.props.write_text(render_server_properties(self.port, self.controller_port, self.data))
        self.log4j.write_text(render_log4j2_properties(self.logs))
        if not (self.data / "meta.properties").exists():
            self._format()
        jvm = (f"-Xmx{self.heap}", f"-Xms{min(256, self._heap_mb)}m", "-XX:+UseG1GC",
               f"-Dkafka.logs.dir={self.logs}")
        started, out = time.time(), self.logs / "kafka.out"
        with out.open("wb") as sink:  # own session: survives the CLI exiting or Ctrl-C in it
            proc = self._proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.props), jvm=jvm), stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if (code := proc.poll()) is not None:
                self.pid_file.unlink(missing_ok=True)
                server_log = self.logs / "server.log"
                fresh = server_log.exists() and server_log.stat().st_mtime >= started
                logf = server_log if fresh else out
                raise LocalKafkaError(f"Kafka exited with code {code} while starting; see {logf}:\n"
                                      + _tail(logf.read_text(errors="replace"), 10))
            if _port_open(self.port) and _answers_as_broker(self.bootstrap, min(5.0, remaining)):
                return self.status(), True
            time.sleep(_POLL)
        raise LocalKafkaError(f"Kafka (pid {proc.pid}) did not answer at {self.bootstrap} in "
                              f"{timeout:.0f}s and is still running; see {self.logs}/server.log")

    def _format(self) -> None:
        """First use only: KRaft refuses to start on an unformatted log dir."""
        if self.cluster_file.exists():
            cluster_id = self.cluster_file.read_text().strip()
        else:  # same shape as `StorageTool random-uuid` (base64url, 16 bytes) without a JVM start
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.cluster_file.write_text(cluster_id + "\n")
        log.info("formatting %s for cluster %s", self.data, cluster_id)
        tool = "kafka.tools.StorageTool"
        cmd = self._java(tool, "format", "-t", cluster_id, "-c", str(self.props))
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise LocalKafkaError(f"formatting {self.data} failed (exit {res.returncode}):\n"
                                  + _tail(res.stdout + res.stderr, 10))

    def _gone(self, pid: int) -> bool:
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

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._gone(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    def down(self, timeout: float = 30.0) -> bool:
        """SIGTERM so Kafka closes its logs cleanly (fast restart); SIGKILL after ``timeout``."""
        st = self.status()
        if st.pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.kill(st.pid, signal.SIGTERM)
            if not self._wait_gone(st.pid, timeout) and self._is_ours(st.pid):
                log.warning("Kafka pid %s ignored SIGTERM for %.0fs; killing", st.pid, timeout)
                os.kill(st.pid, signal.SIGKILL)
            self._wait_gone(st.pid, 10.0)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL without shutdown, for crash tests; the pid file stays, as after a real crash."""
        st = self.status()
        if st.pid is None:
            raise LocalKafkaError(f"nothing to kill: {st.detail}")
        try:
            os.kill(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self._wait_gone(st.pid, 10.0)
