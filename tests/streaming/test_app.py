"""The whole application in-process on a real broker, database and lake: hand-built events in,
every table, the raw layer and the pipeline metrics out."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from globalmart.contracts import ALERTS_TOPIC, Alert
from globalmart.kafka import ensure_topics
from globalmart.raw_layer import raw_path
from globalmart.settings import PlatformSettings
from streaming.app import serve
from streaming.config import StreamingSettings
from tests.streaming.events import at, cart, line, stock, transaction, view

pytestmark = pytest.mark.slow


def produce(bootstrap: str, messages: list[tuple[str, str, bytes]]) -> None:
    """Produce (topic, key, value) messages and wait for delivery."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, key, value in messages:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def test_events_flow_into_every_table_and_the_raw_layer(spark, make_database, broker,
                                                        tmp_path) -> None:
    db = make_database()
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO source.products VALUES ('p1', 'Novel', 'Books', 'Acme', 10, "
                     "12, now())")
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, ["transactions", "product_views", "cart_events",
                              "inventory_events"])
    sales = [
        transaction(items=[line("p1", "Books", 2, "10.05"), line("p2", "Toys", 1, "3.33")],
                    time=at(1), user="a"),
        transaction(items=[line("p1", "Books", 1, "7.77")], time=at(61), user="b"),
        transaction(items=[line("p2", "Toys", 11, "100")], total="1.00", time=at(62), user="c"),
    ]
    messages = [("transactions", e["user_id"], json.dumps(e).encode()) for e in sales]
    messages.append(messages[0])  # a resend
    messages += [("transactions", "x", b"{broken"),
                 ("product_views", "a", json.dumps(view("a", at(0))).encode()),
                 ("product_views", "a", json.dumps(view("a", at(0), duration_seconds=2)).encode()),
                 ("cart_events", "a", json.dumps(cart("add", "a", at(0.5))).encode()),
                 ("inventory_events", "p1", json.dumps(stock("adjustment", -1, "p1")).encode())]
    produce(bootstrap, messages)

    platform = PlatformSettings(database_url=db, kafka_bootstrap_servers=bootstrap,
                                lake_path=str(tmp_path / "lake"))
    settings = StreamingSettings(trigger_interval="1 second", progress_interval_seconds=5)
    lines: list[str] = []
    assert serve(spark, settings, platform, threading.Event(), available_now=True,
                 echo=lines.append) == 0
    assert "stream: caught up" in lines

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(db) as conn:
            return conn.execute(sql).fetchall()

    assert query("SELECT sum(total_amount), sum(units_sold) FROM sales_metrics") == [
        (Decimal("1131.20"), 15)]
    assert query("SELECT category, sum(total_amount) FROM sales_metrics GROUP BY 1 "
                 "ORDER BY 1") == [("Books", Decimal("27.87")), ("Toys", Decimal("1103.33"))]
    assert query("SELECT sum(order_count), sum(billed_amount) FROM order_metrics") == [
        (3, Decimal("32.20"))]
    assert query("SELECT anomaly_type FROM transaction_anomalies ORDER BY 1") == [
        ("total_mismatch",), ("unusual_quantity",)]
    assert query("SELECT topic, reason LIKE '%%duration_seconds%%' FROM dead_letter "
                 "ORDER BY 1") == [("product_views", True), ("transactions", False)]
    assert query("SELECT current_stock, status FROM inventory_status") == [(8, "low")]
    assert query("SELECT session_id, page_views, cart_adds, purchases FROM session_metrics "
                 "ORDER BY 1") == [("s-a", 1, 1, 1), ("s-b", 0, 0, 1), ("s-c", 0, 0, 1)]
    # 11 units scores 0.55, below the alert threshold; the mismatch scores 1.0
    assert query("SELECT alert_type FROM alerts ORDER BY 1") == [
        ("anomaly_total_mismatch",), ("stock_low",)]

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "alerts-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(ALERTS_TOPIC, p, OFFSET_BEGINNING) for p in range(3)])
    published: set[str] = set()
    deadline = time.monotonic() + 30
    while len(published) < 2 and time.monotonic() < deadline:
        for message in consumer.consume(10, timeout=0.2):
            if message.error() is None:
                published.add(Alert.model_validate_json(message.value()).alert_type)
    consumer.close()
    assert published == {"anomaly_total_mismatch", "stock_low"}

    raw = spark.read.parquet(raw_path(platform.lake, "transactions"))
    assert raw.count() == 3
    assert sorted(raw.columns) == sorted(
        ["event_id", "event_time", "schema_version", "transaction_id", "user_id", "session_id",
         "country", "city", "payment_method", "currency", "items", "total_amount",
         "kafka_partition", "kafka_offset", "event_date"])
    metrics = query("SELECT query_name, topic, sum(input_rows), max(max_event_time) "
                    "FROM pipeline_metrics GROUP BY 1, 2 ORDER BY 1, 2")
    by_query = {(q, t): (rows, newest) for q, t, rows, newest in metrics}
    assert by_query[("realtime", "transactions")][0] == 5
    assert by_query[("raw", "transactions")][0] == 3  # the valid events, once each
    assert by_query[("raw", "transactions")][1].isoformat().startswith("2026-03-01T12:01:02")
    assert by_query[("realtime", "product_views")][0] == 2
    assert sorted(by_query) == [(q, t) for q in ("raw", "realtime")
                                for t in ("cart_events", "inventory_events", "product_views",
                                          "transactions")]
    assert query("SELECT max(lag_records) FROM pipeline_metrics") == [(0,)]
