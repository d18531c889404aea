"""Cluster mode: the streaming application and a Dagster daily build with a Spark standalone
cluster (one master, two workers on 127.0.0.1) as their master, each driver in its own process
(as deployed), the lake given as a ``file:`` URL and every process started outside the source
tree, so nothing may lean on a single process, a bare local path or the working directory.
Totals are checked exactly against what was produced (the stream) and against the dataset's
own truth (the warehouse)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from tests.cluster.conftest import SparkCluster
from tests.dagster.conftest import DAY
from tests.dagster.dataset import (
    FACT_SALES_COLUMNS,
    expected_fact_sales,
    generated_day,
    write_raw_layer,
    write_stream_ledger,
)
from tests.streaming.e2e import (
    BIN,
    GENERATOR_ARGS,
    assert_raw_layer_exact,
    assert_totals_exact,
    generate,
    query,
    read_back,
)

pytestmark = pytest.mark.slow

STREAM_TIMEOUT_S = 480
BUILD_TIMEOUT_S = 480


def lake_url(directory: Path) -> str:
    """The lake as the URL a deployment would give (``file:///abs/path``)."""
    return directory.resolve().as_uri()


def hadoop_url(directory: Path) -> str:
    """The lake in Hadoop's own spelling of a local URL (``file:/abs/path``, as Spark prints
    paths)."""
    return f"file:{directory.resolve()}"


def test_stream_on_the_cluster_keeps_totals_exact(spark, spark_cluster: SparkCluster,
                                                  make_database, broker, tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    generate(bootstrap, db, *GENERATOR_ARGS)
    produced = read_back(bootstrap)
    assert produced.rejected and produced.resends and len(produced.transactions) > 100
    lake = lake_url(tmp_path / "lake")
    env = spark_cluster.env(
        GLOBALMART_HOME=str(tmp_path / "home"), GLOBALMART_DATABASE_URL=db,
        GLOBALMART_KAFKA_BOOTSTRAP_SERVERS=bootstrap, GLOBALMART_LAKE_PATH=lake,
        GLOBALMART_STREAM_MASTER=spark_cluster.master_url,
        GLOBALMART_STREAM_TRIGGER_INTERVAL="1 second")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    result = subprocess.run([str(BIN), "stream", "--available-now"], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=STREAM_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout[-2000:] + result.stderr[-4000:]
                                    + spark_cluster.log_tail())
    assert "caught up" in result.stdout
    assert "globalmart-stream" in spark_cluster.app_names()

    assert_totals_exact(db, produced)
    assert_raw_layer_exact(spark, lake, produced)
    assert (tmp_path / "lake" / "checkpoints" / "realtime" / "offsets").is_dir()
    assert list(cwd.iterdir()) == []  # nothing written relative to the driver's directory


def test_daily_build_on_the_cluster_matches_the_dataset(spark_cluster: SparkCluster,
                                                        make_database, tmp_path) -> None:
    url = make_database()
    data, write_sources = generated_day(DAY)
    write_raw_layer(tmp_path / "lake", data)
    write_sources(url)
    write_stream_ledger(url, data)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = spark_cluster.env(
        DAGSTER_HOME=str(home), GLOBALMART_DATABASE_URL=url,
        GLOBALMART_LAKE_PATH=hadoop_url(tmp_path / "lake"),
        GLOBALMART_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        GLOBALMART_SPARK_MASTER=spark_cluster.master_url,
        GLOBALMART_DAGSTER_SHUFFLE_PARTITIONS="2")
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "job", "execute", "-m", "globalmart_dagster.definitions", "-a", "defs",
         "-j", "daily_warehouse_job", "--tags", json.dumps({"dagster/partition": DAY.isoformat()})],
        env=env, cwd=home, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout[-3000:] + result.stderr[-4000:]
                                    + spark_cluster.log_tail())
    assert "globalmart-dagster" in spark_cluster.app_names()

    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.is_success
        records = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
        evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data
                       for r in records if r.event_log_entry.dagster_event is not None]
    assert {e.check_name for e in evaluations} >= {"revenue_reconciles",
                                                   "one_segment_per_customer"}
    assert [e.check_name for e in evaluations if not e.passed] == []

    assert query(url, f"SELECT {FACT_SALES_COLUMNS} FROM warehouse.fact_sales "
                      "WHERE event_date = %s ORDER BY 1, 2", (DAY,)) == expected_fact_sales(data)
    transactions = data.unique("transactions")
    revenue = sum((i["quantity"] * i["unit_price"] for tx in transactions for i in tx["items"]),
                  Decimal("0.00"))
    assert query(url, "SELECT revenue, orders FROM marts.sales_trends "
                      "WHERE trend_type = 'daily'") == [(revenue, len(transactions))]
    sessions: Counter[str] = Counter(e["session_id"] for topic in ("product_views", "cart_events",
                                                                   "transactions")
                                     for e in data.unique(topic))
    assert query(url, "SELECT count(*), sum(purchases), sum(revenue) FROM "
                      "warehouse.fact_sessions") == [(len(sessions), len(transactions), revenue)]
    assert query(url, "SELECT count(*), sum(monetary) FROM marts.customer_rfm_analysis") == [
        (len({tx["user_id"] for tx in transactions}), revenue)]
