"""Unit tests of the pure transforms on small hand-built batches of Kafka records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from globalmart.contracts import parse_event
from streaming.sinks.store import frame_rows
from streaming.transforms.anomalies import rule_anomalies, user_transactions
from streaming.transforms.dedup import first_copies, on_time
from streaming.transforms.inventory import stock_changes, stock_movements, units_sold
from streaming.transforms.parse import (
    _typed,
    accepted,
    check_records,
    of_topic,
    rejected,
    unship,
    valid,
    validate,
    validate_stream,
)
from streaming.transforms.sales import (
    HOUR,
    order_metrics,
    orders,
    sales_metrics,
    transaction_lines,
)
from streaming.transforms.sessions import (
    SESSION_COLUMNS,
    session_activity,
    session_metrics,
)
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

# --- validation: the stream and the contract models agree -------------------------------------

GOOD = [
    ("transactions", transaction()),
    ("transactions", transaction(total="12.50", items=[line(unit_price="6.25", quantity=2)])),
    ("transactions", transaction(total=1)),  # total ≠ Σ lines is valid (an anomaly)
    ("transactions", {k: v for k, v in transaction().items() if k != "schema_version"}),
    ("product_views", view()),
    ("product_views", view(duration_seconds=5)),
    ("product_views", view(duration_seconds=300)),
    ("cart_events", cart("remove")),
    ("inventory_events", stock("restock", 1)),
    ("inventory_events", stock("adjustment", -3)),
]
BAD = [
    ("transactions", "{not json", "Invalid JSON"),
    ("transactions", "", "empty payload"),
    ("transactions", {k: v for k, v in transaction().items() if k != "user_id"}, "user_id"),
    ("transactions", transaction(total=1, items=[line(quantity=-1)]), "quantity"),
    ("transactions", transaction(items=[line(unit_price=-5)]), "unit_price"),
    ("transactions", transaction(items=[line(unit_price="1.234")]), "unit_price"),
    ("transactions", transaction(total=1, items=[line(quantity="many")]), "quantity"),
    ("transactions", transaction(country="Spain"), "country"),
    ("transactions", transaction(payment_method="cash"), "payment_method"),
    ("transactions", transaction(items=[]), "items"),
    ("transactions", transaction(schema_version=2), "schema_version"),
    ("transactions", transaction(extra_field=1), "extra_field"),
    ("transactions", transaction(event_time="2026-03-01T12:00:00"), "event_time"),
    ("transactions", transaction(event_id="not-a-uuid"), "event_id"),
    ("product_views", view(duration_seconds=4), "duration_seconds"),
    ("product_views", view(duration_seconds=301), "duration_seconds"),
    ("product_views", view(device="watch"), "device"),
    ("cart_events", cart("steal"), "action"),
    ("inventory_events", stock("restock", 0), "positive quantity_delta"),
    ("inventory_events", stock("restock", -4), "positive quantity_delta"),
    ("inventory_events", stock("theft", -4), "kind"),
]


def _validated(*rows: tuple):
    return validate(records(list(rows)))


def test_validation_accepts_and_rejects_exactly_what_the_contracts_do() -> None:
    rows = [record(t, p) for t, p in GOOD] + [record(t, p) for t, p, _ in BAD]
    validated = _validated(*rows)
    verdicts = dict(zip(validated["kafka_offset"], validated["reason"], strict=True))
    for (topic, payload, *_), (_, _, offset, raw) in zip(GOOD + BAD, rows, strict=True):
        try:
            parse_event(topic, raw)
            contract_ok = True
        except Exception:  # noqa: BLE001
            contract_ok = False
        assert (verdicts[offset] is None) == contract_ok, (topic, payload, verdicts[offset])
    assert sum(v is None for v in verdicts.values()) == len(GOOD)
    assert len(valid(validated)) == len(GOOD)


def test_rejected_records_keep_payload_and_a_human_reason() -> None:
    rows = [record(t, p) for t, p, _ in BAD] + [record("transactions", b"\xff\xfe{")]
    dead = {r["kafka_offset"]: r for r in rejected(_validated(*rows)).to_dict("records")}
    assert len(dead) == len(rows)
    for (_, _payload, expected), (topic, _, offset, raw) in zip(BAD, rows[:-1], strict=True):
        letter = dead[offset]
        assert expected in letter["reason"], letter["reason"]
        assert letter["payload"] == raw.decode()
        assert letter["topic"] == topic
    assert dead[rows[-1][2]]["payload"] == "\ufffd\ufffd{"


def test_accepted_events_are_typed_exactly() -> None:
    event = transaction(total="39.98", items=[line(unit_price="19.99", quantity=2)],
                        time="2026-03-01T23:59:59.123456+01:00")
    (row,) = accepted(validate(topic_batch("transactions", [event])),
                      "transactions").to_pylist()
    assert row["total_amount"] == Decimal("39.98")
    assert row["items"][0]["unit_price"] == Decimal("19.99")
    assert row["event_id"] == event["event_id"]
    assert row["event_time"] == datetime(2026, 3, 1, 22, 59, 59, 123456, tzinfo=UTC)
    assert row["event_time"].utcoffset() == timedelta(0)
    assert str(row["event_date"]) == "2026-03-01"  # 22:59:59 UTC
    assert row["kafka_partition"] == 0


def _transactions(events):
    return of_topic(validate(topic_batch("transactions", events)), "transactions")


def _lines(events):
    return transaction_lines(_transactions(events))


# --- sales --------------------------------------------------------------------------------------

def test_sales_metrics_put_each_line_in_its_own_category_and_window() -> None:
    events = [
        transaction(items=[line("p1", "Books", 2, "10.05"), line("p2", "Electronics", 1, "999.99")],
                    time=at(5)),
        transaction(items=[line("p3", "Books", 1, "0.01")], time=at(59.999)),
        transaction(items=[line("p4", "Books", 3, "1.10")], time=at(60)),
        transaction(items=[line("p5", "Books", 1, "5")], time=at(10), country="UK"),
    ]
    lines = _lines(events)
    rows = {(str(r["window_start"].time()), r["category"], r["country"]): r
            for r in sales_metrics(lines).to_dict("records")}
    books = rows[("12:00:00", "Books", "USA")]
    assert books["total_amount"] == Decimal("20.11")
    assert books["transaction_count"] == 2 and books["units_sold"] == 3
    assert books["avg_transaction_value"] == Decimal("10.06")  # 20.11 / 2 rounded
    assert books["window_end"] - books["window_start"] == timedelta(minutes=1)
    assert rows[("12:00:00", "Electronics", "USA")]["total_amount"] == Decimal("999.99")
    assert rows[("12:01:00", "Books", "USA")]["total_amount"] == Decimal("3.30")
    assert rows[("12:00:00", "Books", "UK")]["total_amount"] == Decimal("5.00")
    assert len(rows) == 4
    hourly = sales_metrics(lines, HOUR)
    assert sum(hourly["total_amount"]) == Decimal("1028.40")
    assert set(hourly["window_start"]) == {T0}


def test_order_metrics_count_each_transaction_once() -> None:
    events = [
        transaction(items=[line("p1", "Books", 2, "10"), line("p2", "Toys", 1, "5")], total="30"),
        transaction(items=[line("p3", "Books", 1, "7.5")], time=at(30)),
    ]
    (row,) = order_metrics(orders(_transactions(events))).to_dict("records")
    assert row["order_count"] == 2
    assert row["revenue"] == Decimal("32.50")
    assert row["billed_amount"] == Decimal("37.50")
    assert row["units_sold"] == 4
    assert (row["min_order_value"], row["max_order_value"]) == (Decimal("7.50"), Decimal("25.00"))


# --- anomaly rules at their boundaries ----------------------------------------------------------

def _anomalies(events):
    return {(r["transaction_id"], r["anomaly_type"]): r
            for r in rule_anomalies(orders(_transactions(events))).to_dict("records")}


def test_high_value_is_strictly_above_5000() -> None:
    exactly = transaction(items=[line(unit_price="5000.00")], txid="exactly")
    above = transaction(items=[line(unit_price="5000.01")], txid="above")
    huge = transaction(items=[line(unit_price="2000", quantity=10)], txid="huge")
    found = _anomalies([exactly, above, huge])
    assert set(found) == {("above", "high_value"), ("huge", "high_value")}
    assert 0.5 <= found[("above", "high_value")]["anomaly_score"] < 0.51
    assert found[("huge", "high_value")]["anomaly_score"] == 1.0
    assert found[("above", "high_value")]["amount"] == Decimal("5000.01")
    assert "5000.01" in found[("above", "high_value")]["description"]


def test_unusual_quantity_is_more_than_10_on_a_line() -> None:
    ten = transaction(items=[line(quantity=10), line("p2", quantity=10)], txid="ten")
    eleven = transaction(items=[line(quantity=1), line("p2", quantity=11)], txid="eleven")
    found = _anomalies([ten, eleven])
    assert set(found) == {("eleven", "unusual_quantity")}
    assert 0 <= found[("eleven", "unusual_quantity")]["anomaly_score"] <= 1


def test_total_mismatch_and_nothing_on_a_clean_transaction() -> None:
    clean = transaction(items=[line(unit_price="19.99", quantity=3)], txid="clean")
    off = transaction(items=[line(unit_price="19.99", quantity=3)], total="59.98", txid="off")
    found = _anomalies([clean, off])
    assert set(found) == {("off", "total_mismatch")}
    assert "59.97" in found[("off", "total_mismatch")]["description"]
    assert 0.5 <= found[("off", "total_mismatch")]["anomaly_score"] <= 1


def test_one_row_per_transaction_and_type() -> None:
    event = transaction(items=[line(unit_price="600", quantity=11)], total="6600.01", txid="all")
    assert set(_anomalies([event])) == {
        ("all", "high_value"), ("all", "unusual_quantity"), ("all", "total_mismatch")}


def test_user_transactions_carry_what_rapid_fire_needs() -> None:
    event = transaction(user="u9", txid="t9", total="12.00", items=[line(unit_price="12")])
    (row,) = user_transactions(orders(_transactions([event]))).to_dict("records")
    assert (row["user_id"], row["transaction_id"], row["amount"]) == ("u9", "t9", Decimal("12.00"))
    assert row["event_time"] == T0


# --- duplicates and lateness --------------------------------------------------------------------

def test_duplicates_in_a_batch_are_kept_once_per_topic_and_invalid_ones_dropped() -> None:
    sale = transaction(items=[line(unit_price="10")])
    same_id_view = {**view(), "event_id": sale["event_id"]}
    rows = [record("transactions", sale), record("transactions", sale),
            record("product_views", same_id_view), record("transactions", "{broken")]
    frame = first_copies(valid(_validated(*rows)))
    found = sorted(zip(frame["topic"], frame["event_id"], frame["event_time"], frame["reason"],
                       strict=True))
    assert found == [("product_views", sale["event_id"], T0, None),
                     ("transactions", sale["event_id"], T0, None)]
    assert accepted(frame, "transactions")["kafka_offset"].to_pylist() == [rows[0][2]]  # first


def test_on_time_drops_events_before_the_watermark() -> None:
    events = [transaction(time=at(-1), txid="early"), transaction(time=at(0), txid="edge"),
              transaction(time=at(1), txid="later")]
    frame = _transactions(events)
    assert len(on_time(frame, None)) == 3
    kept = accepted(on_time(frame, T0), "transactions")
    assert kept["transaction_id"].to_pylist() == ["edge", "later"]


# --- inventory ----------------------------------------------------------------------------------

def test_stock_movements() -> None:
    lines = _lines([transaction(items=[line("p1", quantity=2), line("p2", quantity=1)]),
                    transaction(items=[line("p1", quantity=3)])])
    sold = units_sold(lines)
    assert dict(zip(sold["product_id"], sold["units_sold"], strict=True)) == {"p1": 5, "p2": 1}
    inventory = of_topic(validate(topic_batch("inventory_events", [
        stock("restock", 10), stock("adjustment", -2), stock("adjustment", 1, product="p2")])),
        "inventory_events")
    moves = {r["product_id"]: (r["units_restocked"], r["units_adjusted"])
             for r in stock_movements(inventory).to_dict("records")}
    assert moves == {"p1": (10, -2), "p2": (0, 1)}
    both = {r["product_id"]: (r["units_sold"], r["units_restocked"], r["units_adjusted"])
            for r in stock_changes(lines, inventory).to_dict("records")}
    assert both == {"p1": (5, 10, -2), "p2": (1, 0, 1)}


# --- sessions -----------------------------------------------------------------------------------

def _sessions(events_by_topic):
    rows = [record(topic, event) for topic, events in events_by_topic.items() for event in events]
    return frame_rows(session_metrics(session_activity(_validated(*rows))), SESSION_COLUMNS)


def test_session_pieces_are_plain_python_values() -> None:
    (row,) = _sessions({
        "product_views": [view("d", at(minutes=0))],
        "transactions": [transaction(user="d", time=at(minutes=3)),
                         transaction(user="d", time=at(minutes=2, seconds=30))],
    })
    assert isinstance(row["duration_seconds"], float) and row["duration_seconds"] == 180.0
    assert row["purchase_times"] == [T0 + timedelta(minutes=2, seconds=30),
                                     T0 + timedelta(minutes=3)]
    assert all(isinstance(t, datetime) and t.utcoffset() == timedelta(0)
               for t in row["purchase_times"])
    assert row["last_cart_add_at"] is None


def test_a_29_minute_gap_stays_one_session_and_31_splits() -> None:
    sessions = _sessions({"product_views": [
        view("a", at(minutes=0)), view("a", at(minutes=29)),
        view("b", at(minutes=0)), view("b", at(minutes=31)),
    ]})
    by_session: dict[str, list] = {}
    for row in sessions:
        by_session.setdefault(row["session_id"], []).append(row)
    assert len(by_session["s-a"]) == 1
    assert by_session["s-a"][0]["page_views"] == 2
    assert by_session["s-a"][0]["duration_seconds"] == 29 * 60
    assert sorted(r["page_views"] for r in by_session["s-b"]) == [1, 1]


def test_session_figures_and_purchase_after_cart() -> None:
    (row,) = _sessions({
        "product_views": [view("c", at(minutes=0))],
        "cart_events": [cart("add", "c", at(minutes=1)), cart("add", "c", at(minutes=2))],
        "transactions": [transaction(user="c", time=at(minutes=16, seconds=59),
                                     items=[line(unit_price="12.34", quantity=2)])],
    })
    assert (row["page_views"], row["cart_adds"], row["purchases"]) == (1, 2, 1)
    assert row["revenue"] == Decimal("24.68") and row["converted"]
    assert row["last_cart_add_at"] == T0 + timedelta(minutes=2)
    assert row["purchased_after_last_add"]  # 14 min 59 s after the last add
    (late,) = _sessions({
        "cart_events": [cart("add", "d", at(minutes=0))],
        "transactions": [transaction(user="d", time=at(minutes=15, seconds=1))],
    })
    assert late["converted"] and not late["purchased_after_last_add"]


def test_the_executors_hand_the_driver_what_validation_here_gives(spark) -> None:
    """Records validated in Spark's tasks (mapInArrow, shipped as Arrow IPC) arrive on the
    driver with the verdicts and the typed fields of the same validation run
    here, across tasks and an empty task."""
    rows = ([record(t, p, partition=n % 3) for n, (t, p) in enumerate(GOOD)]
            + [record(t, p) for t, p, _ in BAD] + [record("transactions", b"\xff{")])
    batch = records(rows)
    local = check_records(batch)
    shipped = spark.createDataFrame(batch.to_pandas()).repartition(4)
    arrived = unship(validate_stream(shipped).toArrow())
    assert arrived.schema == local.schema
    key = [("kafka_offset", "ascending")]
    assert arrived.sort_by(key).drop_columns("event_time").equals(
        local.sort_by(key).drop_columns("event_time"))
    assert arrived.sort_by(key)["event_time"].to_pylist() == local.sort_by(key)[
        "event_time"].to_pylist()
    assert unship(validate_stream(shipped.limit(0)).toArrow()).num_rows == 0


def test_a_valid_event_no_column_can_hold_is_rejected_alone() -> None:
    """Beyond the contract (a model built without validation), a value the typed column
    cannot take fails that event only, with the error as its reason."""
    events = [parse_event("cart_events", json.dumps(cart()).encode()) for _ in range(3)]
    events[1] = events[1].model_copy(update={"quantity": 2**40})
    table, failed = _typed("cart_events", events)
    assert list(failed) == [1] and "cannot be stored" in failed[1]
    assert table["quantity"].to_pylist() == [events[0].quantity, events[2].quantity]
