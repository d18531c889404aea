"""The PostgreSQL sinks on a real database: idempotent batches, anomalies across batches,
stock transitions, sessions merged across batches, dead letters to the topic and the table."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from globalmart.contracts import DEAD_LETTER_TOPIC
from globalmart.kafka import ensure_topics
from streaming.notifier import LogNotifier
from streaming.sinks import (
    BatchStats,
    DeadLetterSink,
    InventorySink,
    Postgres,
    SessionsSink,
    TopicWriter,
    TransactionsSink,
    detect_rapid_fire,
)
from streaming.transforms.parse import accepted, validate
from streaming.transforms.sessions import session_activity
from tests.streaming.events import (
    T0,
    at,
    cart,
    line,
    record,
    records,
    stock,
    topic_batch,
    transaction,
    view,
)


@pytest.fixture
def db(make_database) -> str:
    return make_database()


def _query(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _products(url: str, stocks: dict[str, int]) -> None:
    with psycopg.connect(url) as conn:
        for product, initial in stocks.items():
            conn.execute(
                "INSERT INTO source.products VALUES (%s, %s, 'Books', 'Acme', 10, %s, now()) "
                "ON CONFLICT (product_id) DO UPDATE SET initial_stock = EXCLUDED.initial_stock",
                (product, f"Product {product}", initial))


def _tx_sink(url: str, stats: BatchStats | None = None) -> TransactionsSink:
    return TransactionsSink("transactions", Postgres(url), None, LogNotifier(),
                            stats or BatchStats(), timedelta(minutes=10), 0.8)


def _tx_frame(spark, events):
    return accepted(validate(topic_batch(spark, "transactions", events)), "transactions")


def test_sales_batches_add_up_and_a_replayed_batch_counts_once(spark, db) -> None:
    sink = _tx_sink(db)
    first = [transaction(items=[line("p1", "Books", 2, "10.05")], time=at(5)),
             transaction(items=[line("p2", "Books", 1, "0.10")], time=at(20), country="UK")]
    sink(_tx_frame(spark, first), 0)
    sink(_tx_frame(spark, first), 0)  # Spark replays batch 0 after a crash
    late = [transaction(items=[line("p3", "Books", 1, "1.01")], time=at(30))]
    sink(_tx_frame(spark, late), 1)
    rows = _query(db, "SELECT country, total_amount, transaction_count, avg_transaction_value "
                      "FROM sales_metrics ORDER BY country")
    assert rows == [("UK", Decimal("0.10"), 1, Decimal("0.10")),
                    ("USA", Decimal("21.11"), 2, Decimal("10.56"))]
    assert _query(db, "SELECT sum(total_amount) FROM sales_metrics_hourly") == [
        (Decimal("21.21"),)]
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (3, Decimal("21.21"))]


def test_anomalies_one_row_per_type_and_critical_ones_alert(spark, db) -> None:
    sink = _tx_sink(db)
    big = transaction(items=[line(unit_price="12000")], txid="big")  # score 0.85
    small = transaction(items=[line(unit_price="5000.01")], txid="small", user="u2")
    sink(_tx_frame(spark, [big, small]), 0)
    sink(_tx_frame(spark, [big]), 1)  # a resend after the watermark: still one row
    assert _query(db, "SELECT transaction_id, anomaly_type FROM transaction_anomalies "
                      "ORDER BY 1") == [("big", "high_value"), ("small", "high_value")]
    alerts = _query(db, "SELECT alert_type, severity, entity_id FROM alerts")
    assert alerts == [("anomaly_high_value", "critical", "big")]  # small scores 0.5 < 0.8


def _user_rows(times: list[float], user: str = "u1", prefix: str = "t") -> list[dict]:
    return [{"user_id": user, "transaction_id": f"{prefix}{i}", "event_time":
             T0 + timedelta(seconds=s), "amount": Decimal("10.00")} for i, s in enumerate(times)]


def _rapid(url: str, *batches: list[dict]) -> set[str]:
    with psycopg.connect(url) as conn:
        for rows in batches:
            with conn.transaction():
                detect_rapid_fire(conn, rows, None)
    return {r[0] for r in _query(url, "SELECT transaction_id FROM transaction_anomalies "
                                      "WHERE anomaly_type = 'rapid_fire'")}


@pytest.mark.parametrize("times, flagged", [
    ([0, 10, 20, 30, 40], {"t4"}),                 # 5 within 60 s: the 5th is rapid fire
    ([0, 15, 30, 45], set()),                      # 4 is not
    ([0, 15, 30, 45, 61], set()),                  # 5 spread over 61 s is not
    ([0, 15, 30, 45, 59.999999], {"t4"}),
    ([0, 0, 10, 20, 30, 40, 50], {"t4", "t5", "t6"}),
])
def test_rapid_fire_boundaries(db, times, flagged) -> None:
    assert _rapid(db, _user_rows(times)) == flagged


def test_rapid_fire_across_batches_and_late_arrivals(db) -> None:
    rows = _user_rows([0, 10, 20, 30, 40])
    # the 5th arrives first, the others in two later batches
    assert _rapid(db, rows[4:], rows[:2], rows[2:4]) == {"t4"}
    other = _user_rows([0, 10, 20, 30], user="u2", prefix="x")
    assert _rapid(db, other) == {"t4"}  # another user's 4 do not count


def test_stock_transitions_alert_once_and_unknown_products_wait(spark, db) -> None:
    _products(db, {"p1": 16})
    sink = _tx_sink(db)
    inventory = InventorySink("inventory", Postgres(db), None, LogNotifier(), BatchStats())

    def sell(batch: int, quantity: int, product: str = "p1") -> None:
        sink(_tx_frame(spark, [transaction(items=[line(product, quantity=quantity)])]), batch)

    def status(product: str = "p1"):
        return _query(db, "SELECT current_stock, status FROM inventory_status "
                          "WHERE product_id = %s", (product,))

    sell(0, 6)
    assert status() == [(10, "low")]
    sell(1, 1)
    assert status() == [(9, "low")]
    sell(2, 4)
    assert status() == [(5, "critical")]
    frame = accepted(validate(topic_batch(spark, "inventory_events", [stock("restock", 20)])),
                     "inventory_events")
    inventory(frame, 0)
    assert status() == [(25, "ok")]
    sell(3, 25)
    assert status() == [(0, "out")]
    alerts = _query(db, "SELECT alert_type, severity FROM alerts "
                        "WHERE alert_type LIKE 'stock%%' ORDER BY created_at")
    assert alerts == [("stock_low", "warning"), ("stock_critical", "critical"),
                      ("stock_out", "critical")]
    sell(4, 3, product="p-new")
    assert status("p-new") == []
    _products(db, {"p-new": 100})
    sell(5, 1)
    assert status("p-new") == [(97, "ok")]


def _activity(spark, events_by_topic):
    rows = [record(topic, event) for topic, events in events_by_topic.items() for event in events]
    return session_activity(validate(records(spark, rows)))


def test_sessions_merge_across_batches_and_carts_are_abandoned_behind_the_watermark(
        spark, db) -> None:
    sink = SessionsSink("sessions", Postgres(db), BatchStats(), timedelta(minutes=10))
    sink(_activity(spark, {"product_views": [view("a", at(minutes=0))],
                           "cart_events": [cart("add", "a", at(minutes=1))]}), 0)
    sink(_activity(spark, {"product_views": [view("a", at(minutes=25)),
                                             view("b", at(minutes=20))]}), 1)
    rows = _query(db, "SELECT session_id, page_views, cart_adds, duration_seconds "
                      "FROM session_metrics ORDER BY 1")
    assert rows == [("s-a", 2, 1, 25 * 60.0), ("s-b", 1, 0, 0.0)]
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(0,)]
    # the watermark (max event time − 10 min) passes 1 min + 15 min only after 26 min
    sink(_activity(spark, {"product_views": [view("c", at(minutes=27))]}), 2)
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(0,)]
    sink(_activity(spark, {"product_views": [view("c", at(minutes=28))]}), 3)
    assert _query(db, "SELECT session_id, items_added FROM cart_abandonment") == [("s-a", 1)]
    sink(_activity(spark, {"product_views": [view("a", at(minutes=60))]}), 4)
    assert _query(db, "SELECT count(*) FROM session_metrics WHERE session_id = 's-a'") == [(2,)]
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(1,)]


def test_dead_letters_reach_the_topic_and_the_table(spark, db, broker) -> None:
    ensure_topics(broker.bootstrap_servers, [DEAD_LETTER_TOPIC])
    sink = DeadLetterSink("dead_letter", Postgres(db), TopicWriter(broker.bootstrap_servers),
                          BatchStats())
    rows = [record("transactions", "{oops"), record("product_views", view(duration_seconds=1)),
            record("cart_events", cart())]
    sink(validate(records(spark, rows)), 0)
    sink(validate(records(spark, rows)), 0)
    table = _query(db, "SELECT topic, kafka_offset, payload, reason FROM dead_letter ORDER BY 2")
    assert [(t, o, p) for t, o, p, _ in table] == [
        ("transactions", rows[0][4], "{oops"), ("product_views", rows[1][4], rows[1][1].decode())]
    assert "duration_seconds" in table[1][3]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "t",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(DEAD_LETTER_TOPIC, p, OFFSET_BEGINNING) for p in range(3)])
    seen = []
    for _ in range(50):
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            seen.append(json.loads(message.value()))
        if len(seen) >= 4:
            break
    consumer.close()
    assert {d["offset"] for d in seen} == {rows[0][4], rows[1][4]}
    assert all(d["reason"] for d in seen)
