"""``dg dev`` as ``globalmart up`` starts it: instance storage in PostgreSQL through
dagster.yaml's environment variables, webserver and daemons healthy, the complete-days sensor
ticking, a backfill of two days from the command line carried out by the daemon, and the
daily checks' results per day as the UI reads them (also after one day's check is run alone)."""

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
# What the asset's Checks tab shows: each execution of a check with its day, and the days' status
CHECK_QUERY = """{
  assetCheckExecutions(assetKey: {path: ["warehouse", "fact_sales"]},
                       checkName: "revenue_reconciles", limit: 20) {
    runId partition status evaluation { success } }
  assetNodes(assetKeys: [{path: ["warehouse", "fact_sales"]}]) { assetChecksOrError {
    ... on AssetChecks { checks { name partitionStatuses {
      ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } }
}"""
# The Checks tab's "Execute" for one day: a run of the checks alone with the day's partition tag
CHECKS_ONLY_RUN = """mutation($day: String!) { launchRun(executionParams: {
  selector: {repositoryLocationName: "globalmart", repositoryName: "__repository__",
             pipelineName: "__ASSET_JOB", assetSelection: [],
             assetCheckSelection: [{assetKey: {path: ["warehouse", "fact_sales"]},
                                    name: "revenue_reconciles"}]},
  executionMetadata: {tags: [{key: "dagster/partition", value: $day}]}}) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""


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


def graphql(port: int, query: str, **variables: str) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql",
                          json={"query": query, "variables": variables}, timeout=30)
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def day_statuses(checks: dict) -> list[dict]:
    """The reconciliation's per-day status ranges from a ``CHECK_QUERY`` answer."""
    [reconciliation] = [c for c in checks["assetNodes"][0]["assetChecksOrError"]["checks"]
                        if c["name"] == "revenue_reconciles"]
    return reconciliation["partitionStatuses"]["ranges"]


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

    # The daily facts' checks keep a result per day: the Checks tab lists each day's execution
    # and the days' statuses
    checks = graphql(port, CHECK_QUERY)
    executions = checks["assetCheckExecutions"]
    assert sorted(e["partition"] for e in executions) == [d.isoformat() for d in DAYS]
    assert all(e["status"] == "SUCCEEDED" and e["evaluation"]["success"] for e in executions)
    assert day_statuses(checks) == [
        {"startKey": DAYS[0].isoformat(), "endKey": DAYS[-1].isoformat(), "status": "SUCCEEDED"}]

    # One day's checks alone, as from the Checks tab, leave that day's result failed once the
    # day has lost a sale, and the other day's as it was
    with psycopg.connect(dagster_dev["url"]) as conn:
        conn.execute("DELETE FROM warehouse.fact_sales WHERE transaction_id = (SELECT "
                     "min(transaction_id) FROM warehouse.fact_sales WHERE event_date = %s)",
                     (DAYS[0],))
    launched = graphql(port, CHECKS_ONLY_RUN, day=DAYS[0].isoformat())["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def checked() -> list | None:
        done = [e for e in graphql(port, CHECK_QUERY)["assetCheckExecutions"]
                if e["runId"] == run_id and e["status"] != "IN_PROGRESS"]
        return done or None

    [execution] = wait_until(checked, 300, "the checks-only run", poll=1)
    assert (execution["partition"], execution["status"]) == (DAYS[0].isoformat(), "FAILED")
    ranges = day_statuses(graphql(port, CHECK_QUERY))
    assert [(r["startKey"], r["status"]) for r in ranges] == [
        (DAYS[0].isoformat(), "FAILED"), (DAYS[-1].isoformat(), "SUCCEEDED")]
