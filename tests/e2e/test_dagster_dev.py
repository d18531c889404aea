"""``dg dev`` as ``globalmart up`` starts it: instance storage in PostgreSQL through
dagster.yaml's environment variables, webserver and daemons healthy, the complete-days sensor
ticking, and a backfill of two days from the command line carried out by the daemon."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from globalmart.embedded import EmbeddedBroker, free_port
from tests.dagster.dataset import generated_day, write_raw_layer, write_stream_ledger
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = (date(2026, 11, 18), date(2026, 11, 19))

SENSOR_QUERY = """{
  sensorOrError(sensorSelector: {repositoryName: "__repository__",
      repositoryLocationName: "globalmart", sensorName: "complete_days_sensor"}) {
    ... on Sensor { sensorState { status ticks(limit: 5) { status error { message } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
}"""
RUNS_QUERY = """{ runsOrError(limit: 20) { ... on Runs { results { status
    tags { key value } } } } }"""


@pytest.fixture
def dagster_dev(make_database, broker: EmbeddedBroker, tmp_path: Path) -> Iterator[dict]:
    """``dg dev`` on a free port with its own DAGSTER_HOME and storage database."""
    storage = urlsplit(make_database(migrate=False))
    url = make_database()
    lake = tmp_path / "lake"
    for n, day in enumerate(DAYS):
        data, write_sources = generated_day(day, seed=60 + n)
        write_raw_layer(lake, data)
        write_sources(url)
        write_stream_ledger(url, data)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {
        **os.environ, "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": storage.hostname or "127.0.0.1", "DAGSTER_PG_PORT": str(storage.port),
        "DAGSTER_PG_USER": storage.username or "postgres",
        "DAGSTER_PG_PASSWORD": storage.password or "", "DAGSTER_PG_DB": storage.path.lstrip("/"),
        "GLOBALMART_DATABASE_URL": url, "GLOBALMART_LAKE_PATH": str(lake),
        "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "GLOBALMART_DAGSTER_SENSOR_INTERVAL_SECONDS": "5", "VIRTUAL_ENV": sys.prefix,
    }
    with open(tmp_path / "dagster.log", "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "dg"), "dev", "--target-path", str(REPO), "--use-active-venv",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"port": port, "env": env, "url": url, "process": process,
               "log": tmp_path / "dagster.log"}
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def graphql(port: int, query: str) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30)
    return response.json()["data"]


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_dagster_dev_runs_sensors_and_a_cli_backfill(dagster_dev: dict):
    port = dagster_dev["port"]
    wait_until(lambda: _up(port), 180, "the Dagster webserver", poll=1)

    def ticked() -> dict | None:
        data = graphql(port, SENSOR_QUERY)
        return data if data["sensorOrError"]["sensorState"]["ticks"] else None

    data = wait_until(ticked, 180, "a complete_days_sensor tick", poll=1)
    state = data["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING"
    assert all(t["error"] is None for t in state["ticks"])
    daemons = {d["daemonType"]: d["healthy"] for d in
               data["instance"]["daemonHealth"]["allDaemonStatuses"]}
    assert daemons["SENSOR"] and daemons["SCHEDULER"] and daemons["BACKFILL"]

    done = subprocess.run(
        [str(BIN / "dagster"), "job", "backfill", "-w", str(REPO / "workspace.yaml"),
         "-j", "daily_warehouse_job", "--from", DAYS[0].isoformat(), "--to",
         DAYS[-1].isoformat(), "--noprompt"],
        cwd=REPO, env=dagster_dev["env"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    def finished() -> list | None:
        runs = graphql(port, RUNS_QUERY)["runsOrError"]["results"]
        statuses = {t["value"]: r["status"] for r in runs for t in r["tags"]
                    if t["key"] == "dagster/partition"}
        complete = all(statuses.get(d.isoformat()) in ("SUCCESS", "FAILURE") for d in DAYS)
        return statuses if complete else None

    statuses = wait_until(finished, 600, "the backfill's runs", poll=1)
    assert statuses == {d.isoformat(): "SUCCESS" for d in DAYS}
    with psycopg.connect(dagster_dev["url"]) as conn:
        built = conn.execute("SELECT DISTINCT analysis_date FROM marts.customer_rfm_analysis "
                             "ORDER BY 1").fetchall()
    assert [r[0] for r in built] == list(DAYS)
    assert "Use 'dg dev' instead" not in dagster_dev["log"].read_text(errors="replace")
