"""Late data and duplicates on a real stream (a file stream carrying Kafka-like records, so the
watermark behaves as in the application): late events within the watermark update their
window, later ones are left out of the windows (unless within the late window) but counted in
stock and the day ledger (once, however often they are sent), and resends count once."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from pyspark.sql import functions as F

from streaming.notifier import LogNotifier
from streaming.sinks.batch import BatchStats, RealtimeSink
from streaming.sinks.store import Postgres
from tests.streaming.events import at, line, transaction

SCHEMA = "topic string, partition int, offset long, timestamp timestamp, value string"


def replay(spark, db: str, tmp_path, late_window: timedelta, on_executors: bool = False
           ) -> tuple[list, list, list]:
    """Five batches of transactions of product p1 (one unit each, prices powers of two, so
    every sum names its events), late, too late and resent, validated on the executors or on
    the driver; the sales windows, the day ledger and the units sold afterwards."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    offset = iter(range(1_000))

    def drop(name: str, events: list[dict]) -> None:
        lines = [json.dumps({"topic": "transactions", "partition": 0, "offset": next(offset),
                             "timestamp": at(), "value": json.dumps(e)}) for e in events]
        (inbox / f"{name}.json").write_text("\n".join(lines) + "\n")

    def tx(time: str, price: str) -> dict:
        return transaction(items=[line("p1", "Books", 1, price)], time=time)

    records = (spark.readStream.schema(SCHEMA).json(str(inbox))
               .withColumn("value", F.col("value").cast("binary")))
    sink = RealtimeSink("realtime", Postgres(db), None, LogNotifier(), BatchStats(),
                        timedelta(minutes=10), 0.8, late_window=late_window,
                        on_executors=on_executors)
    query = (sink.records(records).writeStream.foreachBatch(sink)
             .option("checkpointLocation", str(tmp_path / "checkpoint")).start())
    try:
        first = tx(at(minutes=0, seconds=10), "1.00")
        drop("a", [first, tx(at(minutes=20), "2.00")])
        query.processAllAvailable()
        # watermark now 12:10: 12:15 is late but within it, 12:05 is behind it, and the
        # resend of the first event is a duplicate
        behind = tx(at(minutes=5), "8.00")
        drop("b", [tx(at(minutes=15), "4.00"), behind, first])
        query.processAllAvailable()
        drop("c", [tx(at(minutes=15, seconds=30), "16.00"), behind])  # 12:05 sent again
        query.processAllAvailable()
        too_late = tx(at(minutes=1), "32.00")
        drop("d", [too_late, too_late])  # behind the watermark, sent twice
        query.processAllAvailable()
        drop("e", [too_late])  # and once more, in a later batch
        query.processAllAvailable()
    finally:
        query.stop()
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT to_char(window_start, 'HH24:MI'), total_amount, "
                            "transaction_count FROM sales_metrics ORDER BY 1").fetchall()
        ledger = conn.execute("SELECT accepted_transactions, accepted_revenue, "
                              "late_transactions, late_revenue FROM stream_day_ledger").fetchall()
        sold = conn.execute("SELECT units_sold FROM stream_state.inventory_counters "
                            "WHERE product_id = 'p1'").fetchall()
    return rows, ledger, sold


@pytest.mark.parametrize("on_executors", [False, True], ids=["driver", "executors"])
def test_late_events_within_the_watermark_update_their_window(spark, make_database, tmp_path,
                                                             caplog, on_executors) -> None:
    rows, ledger, sold = replay(spark, make_database(), tmp_path, timedelta(0), on_executors)
    assert rows == [("12:00", Decimal("1.00"), 1), ("12:15", Decimal("20.00"), 2),
                    ("12:20", Decimal("2.00"), 1)]
    # the truth from the events above: on time 1 + 2 + 4 + 16; late 8 and 32, each once
    assert ledger == [(4, Decimal("23.00"), 2, Decimal("40.00"))]
    assert sold == [(6,)]
    assert "realtime: 1 events older than the watermark" in caplog.text  # 12:05


def test_the_late_window_admits_events_behind_the_watermark_into_their_past_windows(
        spark, make_database, tmp_path) -> None:
    rows, ledger, sold = replay(spark, make_database(), tmp_path, timedelta(minutes=6))
    # watermark 12:10 minus 6 minutes: 12:05 is admitted (once, though sent twice), 12:01 not
    assert rows == [("12:00", Decimal("1.00"), 1), ("12:05", Decimal("8.00"), 1),
                    ("12:15", Decimal("20.00"), 2), ("12:20", Decimal("2.00"), 1)]
    assert ledger == [(5, Decimal("31.00"), 1, Decimal("32.00"))]
    assert sold == [(6,)]
