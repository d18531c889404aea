"""Complete and converging days, end to end on the real broker, the streaming application,
PostgreSQL, Spark and Dagster (the sensor ticked and the runs it requests executed, as the
daemon does): history emitted by the generator while live traffic flows, late events for a day
already built, and every complete day's figures and every product's stock held to a truth
computed here from the topics themselves; also a stream killed mid-way and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from globalmart.kafka import end_offsets, read_to_end
from globalmart.settings import PlatformSettings
from globalmart_dagster.constants import PRODUCT_WINDOW_DAYS, RFM_LOOKBACK_DAYS
from globalmart_dagster.definitions import build_definitions
from globalmart_dagster.defs.sensors import SensorCursor, complete_days_sensor
from streaming.app import serve
from streaming.config import StreamingSettings
from tests.dagster.conftest import make_resources
from tests.streaming.e2e import BIN, generate
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WORLD = ["--users", "300", "--products", "120", "--history-rate", "0.02"]


def events_in_topic(bootstrap: str, topic: str = "transactions") -> dict[str, dict]:
    """Every event in ``topic``, once per event id (the test's own oracle)."""
    seen: dict[str, dict] = {}
    for value in read_to_end(bootstrap, [topic]):
        event = json.loads(value)
        seen.setdefault(event["event_id"], event)
    return seen


def revenue(event: dict) -> Decimal:
    return sum((Decimal(str(i["unit_price"])) * i["quantity"] for i in event["items"]),
               Decimal("0.00"))


def day_of(event: dict) -> date:
    return datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).astimezone(
        UTC).date()


class Platform:
    """The stream run to caught-up, and Dagster: sensor ticks and the runs they request."""

    def __init__(self, spark, url: str, bootstrap: str, lake: Path) -> None:
        self.spark, self.url, self.bootstrap, self.lake = spark, url, bootstrap, lake
        self.resources = make_resources(url, lake, bootstrap)
        self.defs = build_definitions(self.resources)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.runs: list[tuple[str, str, str]] = []

    def stream(self) -> None:
        platform = PlatformSettings(database_url=self.url, kafka_bootstrap_servers=self.bootstrap,
                                    lake_path=str(self.lake))
        settings = StreamingSettings(trigger_interval="1 second",
                                     checkpoint_root=str(self.lake / "checkpoints"))
        assert serve(self.spark, settings, platform, threading.Event(), available_now=True) == 0

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(cursor=self.cursor, definitions=self.defs,
                                     resources=self.resources, sensor_name="complete_days_sensor",
                                     instance=self.instance) as context:
            result = complete_days_sensor.evaluate_tick(context)
        self.cursor = result.cursor
        for request in result.run_requests or []:
            job = self.defs.resolve_job_def(request.job_name)
            done = job.execute_in_process(partition_key=request.partition_key,
                                          instance=self.instance, raise_on_error=False)
            assert done.success, [e.message for e in done.all_events if e.is_failure]
            self.runs.append((request.job_name, request.partition_key, request.run_key))
        return result

    def settle(self) -> None:
        """Tick until the sensor requests nothing (the daemon would, once a minute)."""
        for _ in range(10):
            if not self.tick().run_requests:
                return
        raise AssertionError(f"the sensor kept requesting runs: {self.runs}")

    def rows(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()


def assert_exact(platform: Platform, days: list[date]) -> None:
    """Every complete day of fact_sales and the daily sales trends, every customer's recency,
    frequency and monetary and every product's units and revenue in the latest snapshots,
    against the topic."""
    truth = events_in_topic(platform.bootstrap)
    per_day: dict[date, list] = defaultdict(lambda: [0, Decimal("0.00")])
    for event in truth.values():
        per_day[day_of(event)][0] += 1
        per_day[day_of(event)][1] += revenue(event)
    built = {d: (n, r) for d, n, r in platform.rows(
        "SELECT event_date, count(DISTINCT transaction_id), sum(line_amount) "
        "FROM warehouse.fact_sales GROUP BY 1")}
    trends = {d: (n, r) for d, n, r in platform.rows(
        "SELECT date, orders, revenue FROM marts.sales_trends WHERE trend_type = 'daily'")}
    for day in days:
        assert built[day] == tuple(per_day[day]), day
        assert trends[day][0] == per_day[day][0] and Decimal(str(trends[day][1])) == \
            per_day[day][1], day
    latest = max(days)
    buyers: dict[str, list] = defaultdict(lambda: [date.min, set(), Decimal("0.00")])
    products: dict[str, list] = defaultdict(lambda: [0, Decimal("0.00")])
    for event in truth.values():
        day = day_of(event)
        if latest - timedelta(days=RFM_LOOKBACK_DAYS) < day <= latest:
            buyer = buyers[event["user_id"]]
            buyer[0] = max(buyer[0], day)
            buyer[1].add(event["transaction_id"])
            buyer[2] += revenue(event)
        if latest - timedelta(days=PRODUCT_WINDOW_DAYS) < day <= latest:
            for item in event["items"]:
                products[item["product_id"]][0] += item["quantity"]
                products[item["product_id"]][1] += (Decimal(str(item["unit_price"]))
                                                    * item["quantity"])
    rfm = {u: (r, f, Decimal(str(m))) for u, r, f, m in platform.rows(
        "SELECT user_id, recency, frequency, monetary FROM marts.customer_rfm_analysis "
        "WHERE analysis_date = %s", (latest,))}
    assert rfm == {u: ((latest - b[0]).days, len(b[1]), b[2]) for u, b in buyers.items()}
    performance = {p: (n, Decimal(str(r))) for p, n, r in platform.rows(
        "SELECT product_id, units_sold, total_revenue FROM marts.product_performance "
        "WHERE analysis_date = %s", (latest,))}
    assert performance == {p: tuple(v) for p, v in products.items()}
    assert_stock_exact(platform, truth)


def assert_stock_exact(platform: Platform, transactions: dict[str, dict]) -> None:
    """Stock movements per product, whenever each event arrived: every sale, restock and
    adjustment in the topics, once."""
    moves: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for event in transactions.values():
        for item in event["items"]:
            moves[item["product_id"]][0] += item["quantity"]
    for event in events_in_topic(platform.bootstrap, "inventory_events").values():
        moves[event["product_id"]][1 if event["kind"] == "restock" else 2] += \
            event["quantity_delta"]
    stored = {p: [s, r, a] for p, s, r, a in platform.rows(
        "SELECT product_id, units_sold, units_restocked, units_adjusted "
        "FROM stream_state.inventory_counters")}
    assert stored == dict(moves)
    initial = dict(platform.rows("SELECT product_id, initial_stock FROM source.products"))
    for product, stock in platform.rows("SELECT product_id, current_stock "
                                        "FROM inventory_status"):
        sold, restocked, adjusted = moves[product]
        assert stock == initial[product] - sold + restocked + adjusted, product


def test_history_late_events_and_rebuilds_converge_to_the_topic(spark, make_database, broker,
                                                                tmp_path) -> None:
    url = make_database()
    bootstrap = broker.bootstrap_servers
    platform = Platform(spark, url, bootstrap, tmp_path / "lake")
    today = datetime.now(UTC).date()
    # three past days of history emitted while live traffic flows, then the stream
    live = subprocess.Popen([str(BIN), "generate", "--seed", "13", "--rate", "100",
                             "--duration", "20", "--users", "300", "--products", "120",
                             "--bootstrap-servers", bootstrap, "--no-database"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    generate(bootstrap, url, "--seed", "11", "--history-days", "3", *WORLD)
    assert live.wait(120) == 0, live.stderr.read() if live.stderr else ""
    platform.stream()
    platform.settle()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    first_builds = [(j, p) for j, p, _ in platform.runs]
    assert [p for j, p in first_builds if j == "daily_warehouse_job"] == [
        d.isoformat() for d in days]
    assert_exact(platform, days)

    # a producer that was offline: more events for the day before yesterday, arriving late
    late_end = datetime.combine(today - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    generate(bootstrap, url, "--seed", "12", "--history-days", "1", "--history-end",
             late_end.isoformat(), *WORLD)
    platform.stream()
    before = len(platform.runs)
    platform.settle()
    rebuilt = platform.runs[before:]
    assert [(j, p) for j, p, _ in rebuilt] == [
        ("daily_warehouse_job", days[1].isoformat()),
        ("latest_marts_job", days[2].isoformat())]
    assert rebuilt[0][2].startswith(f"daily_warehouse_job:{days[1].isoformat()}:")
    assert_exact(platform, days)
    ledger = platform.rows("SELECT sum(late_transactions) FROM stream_day_ledger "
                           "WHERE event_date = %s", (days[1],))
    assert ledger[0][0] > 0, "the replay was not late: the test proves nothing"
    assert SensorCursor.parse(platform.cursor).fences == {}


def test_a_stream_killed_mid_day_restarts_and_every_day_converges(spark, make_database, broker,
                                                                  tmp_path) -> None:
    """``globalmart stream`` SIGKILLed part-way through two days of history (some batches
    committed, some raw-layer files written, the rest not), the sensor ticking meanwhile as the
    daemon would; then the stream restarted from its checkpoint: each day is built once, only
    when complete, and exact."""
    url = make_database()
    bootstrap = broker.bootstrap_servers
    lake = tmp_path / "lake"
    platform = Platform(spark, url, bootstrap, lake)
    today = datetime.now(UTC).date()
    generate(bootstrap, url, "--seed", "21", "--history-days", "2", *WORLD)
    env = {**os.environ, "GLOBALMART_HOME": str(tmp_path / "home"),
           "GLOBALMART_DATABASE_URL": url, "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "GLOBALMART_LAKE_PATH": str(lake), "GLOBALMART_STREAM_MASTER": "local[2]",
           "GLOBALMART_STREAM_TRIGGER_INTERVAL": "1 second",
           "GLOBALMART_STREAM_MAX_OFFSETS_PER_TRIGGER": "300",
           "GLOBALMART_STREAM_RAW_FLUSH_INTERVAL": "1 second"}
    total = sum(end_offsets(bootstrap, ["transactions", "product_views", "cart_events",
                                        "inventory_events"]).values())

    def landed() -> int:
        return int(platform.rows("SELECT coalesce(sum(next_offset), 0) FROM raw_progress")[0][0])

    log = tmp_path / "stream.log"
    with log.open("w") as out:
        first = subprocess.Popen([str(BIN), "stream"], env=env, start_new_session=True,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: first.poll() is not None or landed() > 0, 240,
                 "a first raw-layer flush")
        assert first.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the application and its JVM, mid-history
        first.wait(30)
    assert 0 < landed() < total, "the kill was not mid-way: the test proves nothing"
    platform.tick()  # the daemon ticks while the stream is down: nothing incomplete is built
    for _, partition, _ in platform.runs:
        assert_exact(platform, [date.fromisoformat(partition)])

    platform.stream()  # restarted from the checkpoint the killed run left
    platform.settle()
    days = [today - timedelta(days=n) for n in (2, 1)]
    builds = [p for j, p, _ in platform.runs if j == "daily_warehouse_job"]
    assert sorted(builds) == [d.isoformat() for d in days]  # each day once
    assert landed() == total
    assert_exact(platform, days)
