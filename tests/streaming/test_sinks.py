"""The sinks on a real database: idempotent batches, de-duplication across batches, anomalies
across batches, stock transitions, sessions merged across batches, dead letters to the topic
and the table, and the Parquet raw layer."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from globalmart.contracts import DEAD_LETTER_TOPIC
from globalmart.kafka import end_offsets, ensure_topics
from globalmart.raw_layer import raw_arrow_schema
from streaming.notifier import LogNotifier
from streaming.sinks.anomalies import detect_rapid_fire
from streaming.sinks.batch import BatchStats, RealtimeSink
from streaming.sinks.raw import RawLayer
from streaming.sinks.sessions import merge_staged_sessions, stage_session_pieces
from streaming.sinks.store import REWRITTEN_TABLES, Postgres
from streaming.sinks.topics import TopicWriter
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

LATENESS = timedelta(minutes=10)


@pytest.fixture
def db(make_database) -> str:
    return make_database()


@pytest.fixture
def postgres(db) -> Iterator[Postgres]:
    store = Postgres(db)
    yield store
    store.close()


@pytest.fixture
def sink(postgres) -> RealtimeSink:
    return RealtimeSink("realtime", postgres, None, LogNotifier(), BatchStats(), LATENESS, 0.8)


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


def _sales(sink: RealtimeSink, events: list[dict], batch_id: int):
    return sink.process(topic_batch("transactions", events), batch_id)


def test_sales_batches_add_up_and_a_replayed_batch_counts_once(sink, db) -> None:
    first = topic_batch("transactions", [
        transaction(items=[line("p1", "Books", 2, "10.05")], time=at(5)),
        transaction(items=[line("p2", "Books", 1, "0.10")], time=at(20), country="UK")])
    done = sink.process(first, 0)
    assert done.rows > 0 and done.max_event_time == {"transactions": T0 + timedelta(seconds=20)}
    assert sink.process(first, 0).rows == 0  # Spark replays batch 0 after a crash
    assert _sales(sink, [transaction(time=at(25))], 0).rows == 0  # a committed batch id
    _sales(sink, [transaction(items=[line("p3", "Books", 1, "1.01")], time=at(30))], 1)
    rows = _query(db, "SELECT country, total_amount, transaction_count, avg_transaction_value "
                      "FROM sales_metrics ORDER BY country")
    assert rows == [("UK", Decimal("0.10"), 1, Decimal("0.10")),
                    ("USA", Decimal("21.11"), 2, Decimal("10.56"))]
    assert _query(db, "SELECT sum(total_amount) FROM sales_metrics_hourly") == [
        (Decimal("21.21"),)]
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (3, Decimal("21.21"))]
    assert _query(db, "SELECT batch_id FROM stream_state.batch_commits "
                      "WHERE query_name = 'realtime' ORDER BY 1") == [(0,), (1,)]


def test_a_resend_in_a_later_batch_counts_once_and_late_events_are_dropped(sink, db) -> None:
    sale = transaction(items=[line("p1", "Books", 1, "10")], time=at(minutes=5))
    _sales(sink, [sale], 0)
    late = transaction(items=[line("p1", "Books", 1, "99")], time=at(minutes=-5, seconds=-1))
    edge = transaction(items=[line("p1", "Books", 1, "1")], time=at(minutes=-5))
    done = _sales(sink, [sale, late, edge], 1)  # the watermark is 5 min − 10 min
    assert done.max_event_time == {"transactions": T0 - timedelta(minutes=5)}
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (2, Decimal("11.00"))]
    assert _query(db, "SELECT count(*) FROM stream_state.seen_events") == [(2,)]


def test_seen_ids_are_forgotten_a_generation_at_a_time_once_all_are_behind_the_watermark(
        sink, db) -> None:
    def generations() -> list[tuple]:
        return _query(db, "SELECT generation, count(*) FROM stream_state.seen_events "
                          "GROUP BY 1 ORDER BY 1")

    first = transaction(items=[line("p1", "Books", 1, "1")], time=at(0))
    second = transaction(items=[line("p1", "Books", 1, "2")], time=at(minutes=1))
    _sales(sink, [first], 0)
    _sales(sink, [second], 1)  # the first id's generation stops taking ids
    assert generations() == [(0, 1), (1, 1)]
    _sales(sink, [first, transaction(items=[line("p1", "Books", 1, "4")],
                                     time=at(minutes=10, seconds=1))], 2)
    assert generations() == [(0, 1), (1, 2)]
    _sales(sink, [second], 3)  # the watermark passed the first id: its generation is emptied
    assert generations() == [(1, 2)]
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (3, Decimal("7.00"))]


def test_anomalies_one_row_per_type_and_critical_ones_alert(sink, db) -> None:
    big = transaction(items=[line(unit_price="12000")], txid="big")  # score 0.85
    small = transaction(items=[line(unit_price="5000.01")], txid="small", user="u2")
    _sales(sink, [big, small], 0)
    _sales(sink, [big], 1)  # a resend: still one row
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


def test_rapid_fire_through_the_realtime_sink(sink, db) -> None:
    sales = [transaction(time=at(s), txid=f"r{s}") for s in (40, 0, 10, 20, 30)]
    _sales(sink, sales[:3], 0)
    _sales(sink, sales[3:], 1)
    assert _query(db, "SELECT transaction_id FROM transaction_anomalies "
                      "WHERE anomaly_type = 'rapid_fire'") == [("r40",)]


def test_stock_transitions_alert_once_and_unknown_products_wait(sink, db) -> None:
    _products(db, {"p1": 16})
    batches = iter(range(100))

    def sell(quantity: int, product: str = "p1") -> None:
        _sales(sink, [transaction(items=[line(product, quantity=quantity)])], next(batches))

    def status(product: str = "p1"):
        return _query(db, "SELECT current_stock, status FROM inventory_status "
                          "WHERE product_id = %s", (product,))

    sell(6)
    assert status() == [(10, "low")]
    sell(1)
    assert status() == [(9, "low")]
    sell(4)
    assert status() == [(5, "critical")]
    sink.process(topic_batch("inventory_events", [stock("restock", 20)]), next(batches))
    assert status() == [(25, "ok")]
    sell(25)
    assert status() == [(0, "out")]
    sell(1)
    assert status() == [(-1, "out")]
    alerts = _query(db, "SELECT alert_type, severity FROM alerts "
                        "WHERE alert_type LIKE 'stock%%' ORDER BY created_at")
    assert alerts == [("stock_low", "warning"), ("stock_critical", "critical"),
                      ("stock_out", "critical")]
    sell(3, product="p-new")
    assert status("p-new") == []
    _products(db, {"p-new": 100})
    sell(1)
    assert status("p-new") == [(97, "ok")]


def _activity(sink: RealtimeSink, batch_id: int, events_by_topic: dict[str, list]) -> None:
    rows = [record(topic, event) for topic, events in events_by_topic.items() for event in events]
    sink.process(records(rows), batch_id)


def test_sessions_merge_across_batches_and_carts_are_abandoned_behind_the_watermark(
        sink, db) -> None:
    _activity(sink, 0, {"product_views": [view("a", at(minutes=0))],
                        "cart_events": [cart("add", "a", at(minutes=1))]})
    _activity(sink, 1, {"product_views": [view("a", at(minutes=25)), view("b", at(minutes=20))]})
    rows = _query(db, "SELECT session_id, page_views, cart_adds, duration_seconds "
                      "FROM session_metrics ORDER BY 1")
    assert rows == [("s-a", 2, 1, 25 * 60.0), ("s-b", 1, 0, 0.0)]
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(0,)]
    # the watermark (max event time − 10 min) passes 1 min + 15 min only after 26 min
    _activity(sink, 2, {"product_views": [view("c", at(minutes=27))]})
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(0,)]
    _activity(sink, 3, {"product_views": [view("c", at(minutes=28))]})
    assert _query(db, "SELECT session_id, items_added FROM cart_abandonment") == [("s-a", 1)]
    _activity(sink, 4, {"product_views": [view("a", at(minutes=60))]})
    assert _query(db, "SELECT count(*) FROM session_metrics WHERE session_id = 's-a'") == [(2,)]
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(1,)]


def test_a_purchase_within_15_minutes_of_the_last_add_is_not_abandonment(sink, db) -> None:
    _activity(sink, 0, {"cart_events": [cart("add", "p", at(minutes=0))],
                        "transactions": [transaction(user="p", time=at(minutes=14))]})
    _activity(sink, 1, {"product_views": [view("z", at(minutes=40))]})
    _activity(sink, 2, {"product_views": [view("z", at(minutes=41))]})
    assert _query(db, "SELECT converted, purchased_after_last_add FROM session_metrics "
                      "WHERE session_id = 's-p'") == [(True, True)]
    assert _query(db, "SELECT count(*) FROM cart_abandonment") == [(0,)]


def _piece(start: float, end: float | None = None, views: int = 1, add: float | None = None,
           purchases: tuple = ()) -> dict:
    """A session piece as :func:`session_metrics` makes them (times in minutes after T0)."""
    minutes = [start, *purchases, *([] if add is None else [add])]
    times = [T0 + timedelta(minutes=m) for m in sorted(purchases)]
    last_add = None if add is None else T0 + timedelta(minutes=add)
    return {"session_id": "s", "user_id": "u",
            "session_start": T0 + timedelta(minutes=min(minutes)),
            "session_end": T0 + timedelta(minutes=max([*minutes, end or start])),
            "page_views": views, "cart_adds": int(add is not None), "cart_removes": 0,
            "purchases": len(purchases), "revenue": Decimal("1.00") * len(purchases),
            "last_cart_add_at": last_add,
            "purchased_after_last_add": last_add is not None and any(
                last_add <= t <= last_add + timedelta(minutes=15) for t in times),
            "purchase_times": times}


def _merge(url: str, *pieces: dict, forget: float = -60) -> list[tuple]:
    """Merge a batch of session pieces; the stored sessions (start and end minute, views,
    purchases, purchased after the last add, purchase times kept) in order."""
    with psycopg.connect(url) as conn:
        stage_session_pieces(conn, pd.DataFrame(list(pieces)))
        merge_staged_sessions(conn, T0 + timedelta(minutes=forget))
    return [(round((start - T0).total_seconds() / 60), round((end - T0).total_seconds() / 60),
             views, bought, after, [round((t - T0).total_seconds() / 60) for t in times])
            for start, end, views, bought, after, times in _query(
                url, "SELECT session_start, session_end, page_views, purchases, "
                     "purchased_after_last_add, purchase_times FROM session_metrics "
                     "ORDER BY session_start")]


def test_session_pieces_join_stored_sessions_and_bridge_them(db) -> None:
    assert _merge(db, _piece(0, 10, add=0), _piece(45, 50)) == [
        (0, 10, 1, 0, False, []), (45, 50, 1, 0, False, [])]
    # a purchase 25 min after the add bridges both sessions into one
    assert _merge(db, _piece(25, 30, purchases=(25,))) == [(0, 50, 3, 1, False, [25])]
    assert _merge(db, _piece(81, 82)) == [(0, 50, 3, 1, False, [25]), (81, 82, 1, 0, False, [])]


@pytest.mark.parametrize("gap, rows", [(29, 1), (30, 2), (31, 2)])
def test_a_piece_less_than_30_minutes_after_a_stored_session_joins_it(db, gap, rows) -> None:
    _merge(db, _piece(0))
    assert len(_merge(db, _piece(gap))) == rows


def test_purchase_times_no_later_event_can_need_are_forgotten(db) -> None:
    # bought 5 min after the add: found, and the purchase time is no longer needed once the
    # query accepts no event older than minute 20
    assert _merge(db, _piece(0, add=0, purchases=(5,)), forget=20) == [(0, 5, 1, 1, True, [])]
    assert _merge(db, _piece(21), forget=21) == [(0, 21, 2, 1, True, [])]
    # a later add needs a purchase after it
    assert _merge(db, _piece(22, add=22), forget=22) == [(0, 22, 3, 1, False, [])]
    assert _merge(db, _piece(30, purchases=(30,)), forget=22) == [(0, 30, 4, 2, True, [30])]


def _read_topic(bootstrap: str, topic: str) -> list[dict]:
    """Every message of ``topic`` up to its true end."""
    ends = {key: end for key, end in end_offsets(bootstrap, [topic]).items() if end > 0}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
    seen, pending = [], set(ends)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(100, timeout=0.2):
            if message.error() is None:
                seen.append(json.loads(message.value()))
                if message.offset() + 1 >= ends[(message.topic(), message.partition())]:
                    pending.discard((message.topic(), message.partition()))
    consumer.close()
    assert not pending, f"could not read {pending} to the end"
    return seen


def test_dead_letters_reach_the_topic_and_the_table(postgres, db, broker) -> None:
    ensure_topics(broker.bootstrap_servers, [DEAD_LETTER_TOPIC])
    writer = TopicWriter(broker.bootstrap_servers)
    sink = RealtimeSink("realtime", postgres, writer, LogNotifier(), BatchStats(), LATENESS, 0.8)
    rows = [record("transactions", "{oops"), record("product_views", view(duration_seconds=1)),
            record("cart_events", cart())]
    sink.process(records(rows), 0)
    sink.process(records(rows), 0)  # a replay sends and stores nothing again
    writer.close()
    table = _query(db, "SELECT topic, kafka_offset, payload, reason FROM dead_letter ORDER BY 2")
    assert [(t, o, p) for t, o, p, _ in table] == [
        ("transactions", rows[0][2], "{oops"), ("product_views", rows[1][2], rows[1][3].decode())]
    assert "duration_seconds" in table[1][3]
    seen = _read_topic(broker.bootstrap_servers, DEAD_LETTER_TOPIC)
    assert sorted(d["offset"] for d in seen) == [rows[0][2], rows[1][2]]
    assert all(d["reason"] for d in seen)
    assert {d["payload"] for d in seen} == {"{oops", rows[1][3].decode()}


def _raw_files(lake: Path) -> dict[str, bytes]:
    """Every file under ``lake`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*"))
            if p.is_file()}


def test_raw_layer_lands_each_event_once(sink, db, tmp_path) -> None:
    raw = RawLayer(db, str(tmp_path))
    sale = transaction(total="39.98", items=[line(unit_price="19.99", quantity=2)],
                       time="2026-03-01T23:58:00Z")
    night = transaction(time="2026-03-01T23:02:00-01:00")  # 2 March in UTC
    glance = view(time="2026-03-01T23:59:00Z")
    rows = [record("transactions", sale), record("transactions", sale),
            record("transactions", night), record("product_views", glance),
            record("transactions", "{broken")]
    sink.process(records(rows), 7)
    assert _raw_files(tmp_path) == {}  # buffered until the flush
    sink.process(records(rows), 7)  # a replay of batch 7
    sink.process(records([record("transactions", sale)]), 8)  # a resend, on time
    assert raw.flush() == {"transactions": 2, "product_views": 1}
    files = _raw_files(tmp_path)
    name = "part-0000000007-0000000007.parquet"
    assert sorted(files) == [f"raw/product_views/event_date=2026-03-01/{name}",
                             f"raw/transactions/event_date=2026-03-01/{name}",
                             f"raw/transactions/event_date=2026-03-02/{name}"]
    day = pq.read_table(tmp_path / f"raw/transactions/event_date=2026-03-01/{name}")
    assert day.schema.equals(raw_arrow_schema("transactions"))
    (landed,) = day.to_pylist()
    assert (landed["event_id"], landed["kafka_offset"]) == (sale["event_id"], rows[0][2])
    assert landed["total_amount"] == Decimal("39.98")
    assert landed["event_time"] == datetime(2026, 3, 1, 23, 58, tzinfo=UTC)
    assert landed["items"][0]["unit_price"] == Decimal("19.99")
    (next_day,) = pq.read_table(tmp_path / f"raw/transactions/event_date=2026-03-02/"
                                           f"{name}").to_pylist()
    assert next_day["event_id"] == night["event_id"]
    views = pq.read_table(tmp_path / f"raw/product_views/event_date=2026-03-01/{name}")
    assert views.schema.equals(raw_arrow_schema("product_views"))
    assert views.column("event_id").to_pylist() == [glance["event_id"]]
    assert _query(db, "SELECT count(*) FROM stream_state.raw_buffer") == [(0,)]
    assert raw.flush() == {}  # nothing new: no file
    assert _raw_files(tmp_path) == files
    assert _query(db, "SELECT topic, input_rows, max_event_time FROM pipeline_metrics "
                      "WHERE query_name = 'raw' ORDER BY topic") == [
        ("product_views", 1, datetime(2026, 3, 1, 23, 59, tzinfo=UTC)),
        ("transactions", 2, datetime(2026, 3, 2, 0, 2, tzinfo=UTC))]
    raw.close()


def test_a_flush_that_did_not_commit_leaves_no_duplicate(sink, db, tmp_path) -> None:
    raw = RawLayer(db, str(tmp_path))
    first, second = transaction(time=at(1), txid="first"), transaction(time=at(2), txid="second")
    sink.process(records([record("transactions", first)]), 3)
    assert raw.flush() == {"transactions": 1}
    sink.process(records([record("transactions", second)]), 4)
    day = tmp_path / "raw" / "transactions" / "event_date=2026-03-01"
    # a flush that wrote its file and died before its commit
    (day / "part-0000000004-0000000004.parquet").write_bytes(b"not committed")
    sink.process(records([record("transactions", transaction(time=at(3), txid="third"))]), 5)
    assert raw.flush() == {"transactions": 2}
    assert sorted(p.name for p in day.iterdir()) == ["part-0000000003-0000000003.parquet",
                                                    "part-0000000004-0000000005.parquet"]
    landed = pq.read_table(day).column("transaction_id").to_pylist()
    assert sorted(landed) == ["first", "second", "third"]
    raw.close()


def test_late_events_reach_the_raw_layer_but_not_the_tables(sink, db, tmp_path) -> None:
    raw = RawLayer(db, str(tmp_path))
    sink.process(records([record("transactions", transaction(time=at(minutes=30),
                                                             txid="now"))]), 1)
    late = transaction(time=at(minutes=5), txid="late")  # watermark: 12:30 - 10 min
    sink.process(records([record("transactions", late), record("transactions", late)]), 2)
    assert _query(db, "SELECT count(*) FROM sales_metrics WHERE window_start < %s",
                  (T0 + timedelta(minutes=20),)) == [(0,)]
    assert raw.flush() == {"transactions": 2}
    landed = pq.read_table(tmp_path / "raw" / "transactions").column("transaction_id")
    assert sorted(landed.to_pylist()) == ["late", "now"]
    raw.close()


def test_the_rewritten_tables_are_vacuumed_and_analysed_when_asked(sink, db) -> None:
    for batch in range(2):  # the second batch rewrites the session of the first
        _activity(sink, batch, {"product_views": [view("v", at(minutes=batch))]})
    sink.postgres.close()  # a backend reports its statistics when it exits
    dead = ("SELECT n_dead_tup FROM pg_stat_user_tables "
            "WHERE relid = 'public.session_metrics'::regclass")
    deadline = time.monotonic() + 10
    while _query(db, dead)[0][0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _query(db, dead)[0][0] > 0

    def runs() -> dict[str, tuple[int, int]]:
        return {name: (vacuums, analyses) for name, vacuums, analyses in _query(
            db, "SELECT schemaname || '.' || relname, vacuum_count, analyze_count "
                "FROM pg_stat_user_tables")}

    before = runs()
    sink.postgres.vacuum(analyze=False)
    assert _query(db, dead)[0][0] == 0
    after = runs()
    assert {(after[t][0] - before[t][0], after[t][1] - before[t][1])
            for t in REWRITTEN_TABLES} == {(1, 0)}
    sink.postgres.vacuum()
    analysed = runs()
    assert {analysed[t][1] - after[t][1] for t in REWRITTEN_TABLES} == {1}


def test_the_vacuum_waits_for_the_batch_being_written(postgres, db) -> None:
    """Statistics taken while a batch is uncommitted count none of its rows: PostgreSQL would
    then plan the next batches on 0 rows over hundreds of pages."""
    written, release = threading.Event(), threading.Event()

    def work(conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO public.session_metrics (session_id, user_id, session_start, session_end,"
            " duration_seconds, page_views, cart_adds, cart_removes, purchases, revenue,"
            " converted, purchased_after_last_add) SELECT 's' || i, 'u', now(), now(), 0, 1, 0,"
            " 0, 0, 0, false, false FROM generate_series(1, 5000) i")
        written.set()
        assert release.wait(30)

    batch = threading.Thread(target=postgres.run_batch, args=("realtime", 0, work))
    batch.start()
    assert written.wait(30)
    vacuum = threading.Thread(target=postgres.vacuum, args=(True,))
    vacuum.start()
    vacuum.join(1.0)
    waited = vacuum.is_alive()  # for the batch to commit
    release.set()
    batch.join(30)
    vacuum.join(30)
    assert waited
    assert _query(db, "SELECT relpages > 0, reltuples FROM pg_class "
                      "WHERE oid = 'public.session_metrics'::regclass") == [(True, 5000.0)]


def test_conflicting_duplicates_go_to_the_dead_letter_and_the_first_copy_counts(sink, db
                                                                                ) -> None:
    first = transaction(items=[line("p1", "Books", 1, "10")], time=at(minutes=5))
    resend = dict(first)
    other = {**first, "items": [line("p1", "Books", 1, "99")]}  # same id, other bytes
    rows = [record("transactions", first), record("transactions", resend),
            record("transactions", other)]
    sink.process(records(rows), 0)
    later = record("transactions", {**first, "city": "Boston"})
    sink.process(records([later]), 1)
    moved = transaction(items=[line("p1", "Books", 1, "5")], time=at(minutes=30))
    sink.process(topic_batch("transactions", [moved]), 2)  # first is now behind the watermark
    behind = record("transactions", {**first, "city": "Denver"})
    sink.process(records([behind]), 3)
    dead = _query(db, "SELECT kafka_offset, reason FROM dead_letter ORDER BY 1")
    assert [o for o, _ in dead] == [rows[2][2], later[2], behind[2]]
    assert all(r.startswith("conflicting duplicate") and first["event_id"] in r for _, r in dead)
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (2, Decimal("15.00"))]
    assert _query(db, "SELECT sum(accepted_transactions), sum(late_transactions) "
                      "FROM stream_day_ledger") == [(2, 0)]


POISON = """
CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.category = 'Poison' THEN
        RAISE EXCEPTION 'value out of range for this column' USING ERRCODE = '22003';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON public.sales_metrics
    FOR EACH ROW EXECUTE FUNCTION public.poison();
"""


def test_records_a_table_cannot_store_are_isolated_and_the_rest_commits(sink, db,
                                                                        caplog) -> None:
    """A value the stored column refuses (here a trigger that raises PostgreSQL's
    numeric_value_out_of_range for one category, the error an overflowing amount gets) fails
    the batch's write: the batch is split until the records at fault are found; they go to the
    dead letter with the error, every other event is counted exactly."""
    with psycopg.connect(db) as conn:
        conn.execute(POISON)  # type: ignore[arg-type]
    good = [transaction(items=[line(f"p{n}", "Books", 1, f"{n}.00")], time=at(n))
            for n in range(1, 41)]
    bad = [transaction(items=[line("p0", "Poison", 1, "1000.00")], time=at(n))
           for n in (7, 23, 38)]
    rows = [record("transactions", e) for e in good[:7] + [bad[0]] + good[7:22] + [bad[1]]
            + good[22:] + [bad[2]]]
    sink.process(records(rows), 0)
    dead = _query(db, "SELECT kafka_offset, reason FROM dead_letter ORDER BY 1")
    offsets = {r[2] for r, e in zip(rows, good[:7] + [bad[0]] + good[7:22] + [bad[1]]
                                    + good[22:] + [bad[2]], strict=True) if e in bad}
    assert {o for o, _ in dead} == offsets
    assert all(r.startswith("cannot be stored") and "out of range" in r for _, r in dead)
    truth = sum(Decimal(str(e["items"][0]["unit_price"])) for e in good)
    assert _query(db, "SELECT sum(order_count), sum(revenue) FROM order_metrics") == [
        (len(good), truth)]
    assert _query(db, "SELECT sum(total_amount) FROM sales_metrics") == [(truth,)]
    assert _query(db, "SELECT next_offset FROM raw_progress") == []  # not flushed yet
    assert _query(db, "SELECT max(next_offset) FROM stream_state.batch_offsets") == [
        (max(r[2] for r in rows) + 1,)]
    assert "splitting them to find the records at fault" in caplog.text
    assert sink.process(records(rows), 0).rows == 0  # a replay of the batch changes nothing


def test_a_dead_letter_too_large_for_kafka_keeps_its_reason_and_its_payload_in_the_lake(
        postgres, db, broker, tmp_path) -> None:
    ensure_topics(broker.bootstrap_servers, [DEAD_LETTER_TOPIC])
    writer = TopicWriter(broker.bootstrap_servers)
    sink = RealtimeSink("realtime", postgres, writer, LogNotifier(), BatchStats(), LATENESS, 0.8,
                        lake=str(tmp_path))
    huge = '{"note": "' + "\u0001" * 400_000 + '"'  # 400 kB, six times that as JSON text
    row = record("transactions", huge)
    sink.process(records([row, record("cart_events", cart())]), 0)
    writer.close()
    (letter,) = _read_topic(broker.bootstrap_servers, DEAD_LETTER_TOPIC)
    assert letter["payload"] == "" and letter["reason"]
    assert letter["payload_bytes"] == len(huge.encode())
    assert letter["payload_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert Path(letter["quarantined_at"]).read_text() == huge
    assert _query(db, "SELECT payload FROM dead_letter") == [(huge.replace("\x00", ""),)]
    assert _query(db, "SELECT count(*) FROM stream_state.seen_events") == [(1,)]
