"""A Spark standalone cluster for the cluster-mode tests: one master and two workers (one core,
1 GiB each) on 127.0.0.1, started from the installed pyspark with ``spark-class``.

Only one SparkContext can live in a Python process (and the session's ``spark`` fixture holds
a local one), so every driver that uses the cluster runs in a subprocess; :meth:`SparkCluster.env`
is the environment such a subprocess needs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from globalmart.embedded import free_port

WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1g"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# Drivers on this cluster: one small executor per worker, every core of the cluster at most.
DRIVER_DEFAULTS = {"spark.cores.max": str(WORKERS * WORKER_CORES),
                   "spark.executor.memory": WORKER_MEMORY,
                   "spark.executor.cores": str(WORKER_CORES)}
REPO = Path(__file__).resolve().parents[2]


def spark_home() -> Path:
    """The installed pyspark's own Spark distribution (bin/spark-class, jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkCluster:
    """A running standalone master and its workers."""

    master_url: str
    webui_url: str
    conf_dir: Path
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        """The master's state as its web UI serves it (``/json/``)."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as response:  # noqa: S310
            return dict(json.load(response))

    def app_names(self) -> list[str]:
        """Names of every application the master has run or runs."""
        state = self.state()
        return [app["name"] for app in state.get("activeapps", []) + state.get(
            "completedapps", [])]

    def env(self, **variables: str) -> dict[str, str]:
        """The environment of a driver subprocess on this cluster: this worktree's code first
        on the path, Spark bound to 127.0.0.1 and the cluster's defaults (spark-defaults.conf
        in ``conf_dir``), plus ``variables``."""
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), path])),
                "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_CONF_DIR": str(self.conf_dir),
                **variables}

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
                         for log in sorted(self.logs.glob("*.out")))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (a worker's executors are in its group), SIGKILL after a
    while."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A Spark standalone master and two workers on 127.0.0.1, up until both workers are
    registered; stopped (with their executors) at the end of the session."""
    root = tmp_path_factory.mktemp("spark-cluster")
    home = spark_home()
    spark_class = home / "bin" / "spark-class"
    conf_dir, logs = root / "conf", root / "logs"
    conf_dir.mkdir()
    logs.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "".join(f"{key} {value}\n" for key, value in DRIVER_DEFAULTS.items()))
    port, webui = free_port(), free_port()
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui}", conf_dir,
                           logs)
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_CONF_DIR": str(conf_dir), "SPARK_LOG_DIR": str(logs),
           "SPARK_WORKER_DIR": str(root / "work"), "PYSPARK_PYTHON": sys.executable,
           "SPARK_DAEMON_MEMORY": "256m"}

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.out").open("w") as out:
            cluster.processes.append(subprocess.Popen(
                [str(spark_class), *args], env=env, cwd=root, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(webui))
        for n in range(WORKERS):
            start(f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                  "--port", str(free_port()), "--webui-port", str(free_port()),
                  "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
                  "--work-dir", str(root / "work" / str(n)), cluster.master_url)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            exited = [p.args for p in cluster.processes if p.poll() is not None]
            if exited:
                raise RuntimeError(f"{exited} exited:\n{cluster.log_tail()}")
            try:
                if cluster.state().get("aliveworkers") == WORKERS:
                    break
            except OSError:
                pass  # the master's web UI is not up yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{WORKERS} workers not registered within "
                                   f"{READY_TIMEOUT_S:.0f} s:\n{cluster.log_tail()}")
            time.sleep(0.2)  # polling interval of a condition with a deadline
        yield cluster
    finally:
        for process in reversed(cluster.processes):  # the workers (and executors) first
            _stop(process)
