"""End to end: the generator (fixed seed) into a real broker, the streaming application until
it has caught up, then every figure checked against what was actually produced (read back
from the topics and validated with the contracts) and against the generator's ground truth.
Also a hard kill (SIGKILL) of ``globalmart stream`` mid-stream and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from globalmart.contracts import INPUT_TOPICS, Transaction, parse_event
from globalmart.kafka import end_offsets, ensure_topics
from globalmart.settings import PlatformSettings
from streaming.app import serve
from streaming.config import StreamingSettings
from streaming.schemas import raw_path

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "globalmart"
GENERATOR_ARGS = ["--seed", "7", "--history-days", "1", "--history-rate", "0.1",
                  "--anomaly-rate", "0.05", "--malformed-rate", "0.01", "--resend-rate", "0.01",
                  "--users", "2000", "--products", "500"]


def generate(bootstrap: str, db: str, *args: str, duration: str = "0") -> None:
    """Run ``globalmart generate`` to completion."""
    result = subprocess.run([str(BIN), "generate", *args, "--duration", duration,
                             "--bootstrap-servers", bootstrap, "--database-url", db],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@dataclass
class Produced:
    """What the topics hold, validated with the contracts (the test's own oracle)."""

    valid: dict[str, dict[str, object]] = field(default_factory=dict)  # event_id -> event
    valid_per_topic: Counter = field(default_factory=Counter)
    resends: int = 0
    rejected: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def transactions(self) -> list[Transaction]:
        return [e for e in self.valid.values() if isinstance(e, Transaction)]


def read_back(bootstrap: str) -> Produced:
    """Read every input topic to its true end and validate each record."""
    ends = end_offsets(bootstrap, INPUT_TOPICS)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-oracle",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    pending = {key for key, end in ends.items() if end > 0}
    produced = Produced()
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.2):
            if message.error() is not None:
                continue
            key = (message.topic(), message.partition())
            if message.offset() + 1 >= ends[key]:
                pending.discard(key)
            try:
                event = parse_event(message.topic(), message.value())
            except Exception:  # noqa: BLE001 - a rejected record
                produced.rejected.append((message.topic(), message.partition(),
                                          message.offset()))
                continue
            if str(event.event_id) in produced.valid:
                produced.resends += 1
            else:
                produced.valid[str(event.event_id)] = event
                produced.valid_per_topic[message.topic()] += 1
    consumer.close()
    assert not pending, f"could not read {pending} to the end"
    return produced


def query(db: str, sql: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_totals_exact(db: str, produced: Produced) -> None:
    """Sales and order figures equal the produced transactions exactly; malformed records are
    all dead letters; resends count once."""
    transactions = produced.transactions
    line_revenue = sum((t.lines_total for t in transactions), Decimal("0.00"))
    billed = sum((t.total_amount for t in transactions), Decimal("0.00"))
    assert query(db, "SELECT sum(total_amount) FROM sales_metrics") == [(line_revenue,)]
    assert query(db, "SELECT sum(total_amount) FROM sales_metrics_hourly") == [(line_revenue,)]
    assert query(db, "SELECT sum(order_count), sum(revenue), sum(billed_amount) "
                     "FROM order_metrics") == [(len(transactions), line_revenue, billed)]
    dead = query(db, "SELECT topic, kafka_partition, kafka_offset, reason FROM dead_letter")
    assert sorted((t, p, o) for t, p, o, _ in dead) == sorted(produced.rejected)
    assert all(reason for *_, reason in dead)
    units = sum(line.quantity for t in transactions for line in t.items)
    assert query(db, "SELECT sum(units_sold) FROM sales_metrics") == [(units,)]
    per_day: dict = {}
    for t in transactions:
        day = per_day.setdefault(t.event_time.date(), [0, Decimal("0.00")])
        day[0] += 1
        day[1] += t.lines_total
    assert query(db, "SELECT event_date, accepted_transactions + late_transactions, "
                     "accepted_revenue + late_revenue FROM stream_day_ledger "
                     "ORDER BY 1") == [(d, n, r) for d, (n, r) in sorted(per_day.items())]


def assert_raw_progress_at_the_end(db: str, bootstrap: str) -> None:
    """Once caught up and flushed, the raw layer accounts for every record of every input
    partition (the offsets the Dagster sensor fences days with)."""
    ends = {key: end for key, end in end_offsets(bootstrap, INPUT_TOPICS).items() if end}
    assert {(t, p): o for t, p, o in query(
        db, "SELECT topic, kafka_partition, next_offset FROM raw_progress")} == ends


def assert_raw_layer_exact(spark, lake: str, produced: Produced) -> None:
    for topic in INPUT_TOPICS:
        frame = spark.read.parquet(raw_path(lake, topic))
        assert frame.count() == produced.valid_per_topic[topic], topic
        assert frame.select("event_id").distinct().count() == produced.valid_per_topic[topic]


def test_generated_events_end_to_end(spark, make_database, broker, tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    generate(bootstrap, db, *GENERATOR_ARGS)
    produced = read_back(bootstrap)
    assert produced.rejected and produced.resends and len(produced.transactions) > 100

    platform = PlatformSettings(database_url=db, kafka_bootstrap_servers=bootstrap,
                                lake_path=str(tmp_path / "lake"))
    settings = StreamingSettings(trigger_interval="1 second")
    assert serve(spark, settings, platform, threading.Event(), available_now=True) == 0

    assert_totals_exact(db, produced)
    assert_raw_progress_at_the_end(db, bootstrap)
    truth = set(query(db, "SELECT transaction_id, anomaly_type FROM source.injected_anomalies"))
    found = set(query(db, "SELECT transaction_id, anomaly_type FROM transaction_anomalies"))
    assert {kind for _, kind in truth} == {"high_value", "unusual_quantity", "rapid_fire",
                                            "total_mismatch"}
    assert truth - found == set(), "recall below 1.0"
    assert found - truth == set(), "precision below 1.0"
    assert_raw_layer_exact(spark, platform.lake, produced)
    assert query(db, "SELECT count(*) FROM session_metrics") != [(0,)]
    assert query(db, "SELECT count(*) FROM inventory_status") != [(0,)]
    newest = max(e.event_time for e in produced.valid.values())
    (reported,), = query(db, "SELECT max(max_event_time) FROM pipeline_metrics "
                             "WHERE query_name = 'raw'")
    assert reported == newest


def wait_for(condition, timeout: float, what: str, poll: float = 0.05) -> None:
    """Wait until ``condition()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def test_restart_after_a_hard_kill_keeps_totals_exact(spark, make_database, broker,
                                                      tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, list(INPUT_TOPICS))
    generate(bootstrap, db, *GENERATOR_ARGS)
    env = {**os.environ, "GLOBALMART_HOME": str(tmp_path / "home"),
           "GLOBALMART_DATABASE_URL": db, "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "GLOBALMART_LAKE_PATH": str(tmp_path / "lake"), "GLOBALMART_STREAM_MASTER": "local[2]",
           "GLOBALMART_STREAM_TRIGGER_INTERVAL": "1 second"}
    live = subprocess.Popen([str(BIN), "generate", "--seed", "8", "--rate", "300", "--duration",
                             "25", "--users", "2000", "--products", "500",
                             "--malformed-rate", "0.01", "--resend-rate", "0.01",
                             "--bootstrap-servers", bootstrap, "--database-url", db],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "first-run.log"
    with log.open("w") as out:
        first = subprocess.Popen([str(BIN), "stream"], env=env, start_new_session=True,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: first.poll() is not None or query(
            db, "SELECT count(*) FROM stream_state.batch_commits "
                "WHERE query_name = 'realtime'")[0][0] >= 1,
            240, "a committed transaction batch")
        assert first.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the application and its JVM, mid-stream
        first.wait(30)
    assert live.wait(120) == 0
    produced = read_back(bootstrap)
    second = subprocess.run([str(BIN), "stream", "--available-now"], env=env,
                            capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "caught up" in second.stdout
    assert_totals_exact(db, produced)
    assert_raw_progress_at_the_end(db, bootstrap)
    assert_raw_layer_exact(spark, str(tmp_path / "lake"), produced)


def test_sigterm_stops_cleanly_after_printing_progress(make_database, broker, tmp_path) -> None:
    db = make_database()
    env = {**os.environ, "GLOBALMART_HOME": str(tmp_path / "home"),
           "GLOBALMART_DATABASE_URL": db,
           "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "GLOBALMART_LAKE_PATH": str(tmp_path / "lake"), "GLOBALMART_STREAM_MASTER": "local[2]",
           "GLOBALMART_STREAM_PROGRESS_INTERVAL_SECONDS": "1"}
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        app = subprocess.Popen([str(BIN), "stream"], env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def progress_lines() -> int:
            return sum(line.startswith("stream: ") and "running" not in line
                       for line in log.read_text().splitlines())

        wait_for(lambda: app.poll() is not None or progress_lines() >= 2, 240,
                 "progress lines", poll=0.2)
        assert app.poll() is None, log.read_text()[-3000:]
        app.send_signal(signal.SIGTERM)
        assert app.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait(30)
    text = log.read_text()
    assert "SIGTERM received" in text and "stream: stopped (status 0)" in text
