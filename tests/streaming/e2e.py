"""The end-to-end streaming tests' oracle and helpers, shared by the local-mode tests
(``tests/e2e/test_stream.py``) and the cluster-mode ones (``tests/cluster``): run the
seeded generator into a broker, read the topics back and validate each record with the contracts
(what was actually produced), and check the stream's tables and raw layer against it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition

from globalmart.contracts import INPUT_TOPICS, Transaction, parse_event
from globalmart.kafka import end_offsets
from globalmart.raw_layer import raw_path

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


def query(db: str, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


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
