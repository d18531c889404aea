"""Where the streaming queries write: PostgreSQL (psycopg 3), Kafka topics and Parquet.

Every PostgreSQL write of a micro-batch happens in one transaction together with a row in
``stream_state.batch_commits``: a batch Spark replays after a crash finds its row and is
skipped, so additive writes (sales sums, stock counters, merged sessions) never count twice.
De-duplication state (``stream_state.seen_events``) and the watermark
(``stream_state.query_progress``) change in that same transaction. Messages for Kafka topics
are produced and flushed before the transaction commits, with deterministic ids, so a replay
may repeat a message but never loses one. A batch's raw-layer rows are buffered in that same
transaction; the raw-layer flush writes them to Parquet files named by the range of batches
they hold and deletes them from the buffer in its own transaction.

Rows reach PostgreSQL through ``COPY`` into a temporary table, then ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import errors, sql
from pyarrow import fs as pa_fs
from pyspark.sql import DataFrame

from globalmart.contracts import ALERTS_TOPIC, DEAD_LETTER_TOPIC, INPUT_TOPICS, Alert, DeadLetter
from globalmart.db import copy_arrow
from globalmart.lake import filesystem
from streaming.metrics import RAW_QUERY, write_metrics
from streaming.notifier import Notifier
from streaming.schemas import raw_path
from streaming.transforms.anomalies import (
    ANOMALY_COLUMNS,
    RAPID_FIRE_COUNT,
    RAPID_FIRE_WINDOW_SECONDS,
    USER_TX_COLUMNS,
    rule_anomalies,
    user_transactions,
)
from streaming.transforms.dedup import first_copies, on_time
from streaming.transforms.inventory import MOVEMENT_COLUMNS, stock_changes
from streaming.transforms.parse import KAFKA_COLUMNS, accepted, of_topic, rejected, valid, validate
from streaming.transforms.sales import (
    HOUR,
    MINUTE,
    ORDER_METRIC_COLUMNS,
    order_metrics,
    orders,
    sales_metrics,
    transaction_lines,
)
from streaming.transforms.sessions import (
    ABANDONMENT_MINUTES,
    SESSION_GAP,
    session_activity,
    session_metrics,
)

log = logging.getLogger(__name__)

ALERT_NAMESPACE = uuid.UUID("6f1d6a52-6c0b-4b8e-9a57-2f0c1c3e8d11")
_RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)


# --- Spark and pandas to Python ---------------------------------------------------------------

def collect_records(batch: DataFrame) -> pa.Table:
    """A micro-batch's Kafka records (topic, partition, offset, value) on the driver, in one
    Spark job with no shuffle."""
    return batch.select(*KAFKA_COLUMNS).toArrow()


def frame_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """``columns`` of ``frame`` as dicts of Python values (NaT/NaN as None, numbers as int or
    float, timestamps as pandas Timestamps, which are UTC-aware datetimes), ready for
    psycopg."""
    values = [frame[name].astype(object).where(frame[name].notna(), None).tolist()
              for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


# Tables the realtime query updates or deletes from in every batch.
REWRITTEN_TABLES = ("stream_state.seen_generations", "stream_state.query_progress",
                    "stream_state.raw_buffer", "stream_state.recent_transactions",
                    "stream_state.inventory_counters", "public.inventory_status",
                    "public.session_metrics", "public.sales_metrics",
                    "public.sales_metrics_hourly", "public.order_metrics")


# --- Kafka ------------------------------------------------------------------------------------

class TopicWriter:
    """Produces messages asynchronously and flushes them, raising if any was not delivered."""

    def __init__(self, bootstrap_servers: str, timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        self._producer: Any = Producer({"bootstrap.servers": bootstrap_servers,
                                        "linger.ms": 5, "acks": "all"})
        self._timeout = timeout
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def _delivered(self, err, message) -> None:
        if err is not None:
            self._failures.append(f"{message.topic()}: {err}")

    def close(self) -> None:
        """Flush what is pending and release the producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self._timeout)
                self._producer = None

    def send_all(self, topic: str, messages: Iterable[tuple[str, str]]) -> int:
        """Produce ``(key, value)`` messages to ``topic`` and wait until all are delivered."""
        with self._lock:
            if self._producer is None:
                raise RuntimeError("the topic writer is closed")
            self._failures.clear()
            count = 0
            for key, value in messages:
                while True:
                    try:
                        self._producer.produce(topic, value=value.encode(), key=key.encode(),
                                               on_delivery=self._delivered)
                        break
                    except BufferError:
                        self._producer.poll(0.05)
                count += 1
            if count:
                left = self._producer.flush(self._timeout)
                if left:
                    raise RuntimeError(f"{left} messages to {topic} not delivered within "
                                       f"{self._timeout:.0f} s")
                if self._failures:
                    raise RuntimeError(f"delivery to {topic} failed: {self._failures[:3]}")
            return count


# --- PostgreSQL -------------------------------------------------------------------------------

class Postgres:
    """A connection per query (each query's foreachBatch runs on its own driver thread) and
    the batch-commit protocol; :meth:`vacuum` runs between two batches."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._writing = threading.Lock()  # held by a batch's transaction and by a vacuum
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        """The open connection, reconnecting after a failure."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            from globalmart.db import connect

            self._conn = connect(self.url)
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_batch(self, query_name: str, batch_id: int,
                  work: Callable[[psycopg.Connection], None], attempts: int = 3) -> bool:
        """Run ``work`` in one transaction together with the commit mark of
        (``query_name``, ``batch_id``). Returns False, doing nothing, when the batch was
        committed before (a replay). Deadlocks and lost connections are retried."""
        with self._writing:
            return self._run_batch(query_name, batch_id, work, attempts)

    def _run_batch(self, query_name: str, batch_id: int,
                   work: Callable[[psycopg.Connection], None], attempts: int) -> bool:
        for attempt in range(1, attempts + 1):
            conn = self.connection()
            try:
                with conn.transaction():
                    fresh = conn.execute(
                        "INSERT INTO stream_state.batch_commits (query_name, batch_id) "
                        "VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                        (query_name, batch_id)).fetchone()
                    if fresh is None:
                        log.info("%s batch %d was committed before; skipped", query_name,
                                 batch_id)
                        return False
                    work(conn)
                return True
            except (*_RETRIED, psycopg.OperationalError) as exc:
                if attempt == attempts:
                    raise
                log.warning("%s batch %d: %s; retrying", query_name, batch_id, exc)
                if isinstance(exc, psycopg.OperationalError):
                    self.close()
        raise AssertionError("unreachable")

    def run(self, work: Callable[[psycopg.Connection], None]) -> None:
        """Run ``work`` in one transaction (for writes idempotent by their keys)."""
        conn = self.connection()
        with conn.transaction():
            work(conn)

    def vacuum(self, analyze: bool = True) -> None:
        """``VACUUM`` (and with ``analyze``, ``ANALYZE``) the tables the realtime query rewrites
        every batch, between two batches. Each batch rewrites the row of every session it
        touches and forgets the transactions behind the watermark; where autovacuum is off or
        lags, their dead rows pile up and every batch slows down. (Analysing samples up to
        30,000 rows of each table, which is needed far less often.) Statistics taken while a
        batch's rows are uncommitted count none of them: early in a run that left
        ``session_metrics`` at hundreds of pages and 0 rows, and a batch of 50,000 events,
        planned on that, took 228 s instead of 2."""
        from globalmart.db import connect

        asked = time.monotonic()
        with self._writing, connect(self.url, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute(f"VACUUM {'(ANALYZE) ' if analyze else ''}{', '.join(REWRITTEN_TABLES)}")
        log.debug("vacuum%s: %.0f ms, after waiting %.0f ms for the batch being written",
                  " and analyse" if analyze else "", (time.monotonic() - started) * 1000,
                  (started - asked) * 1000)


def copy_temp(conn: psycopg.Connection, table: str, ddl: str, columns: Sequence[str],
              rows: Iterable[dict[str, Any]]) -> None:
    """Create temporary ``table`` (``ddl`` column definitions, dropped at commit) and COPY
    ``rows`` into it."""
    conn.execute(f"CREATE TEMP TABLE {table} ({ddl}) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def copy_frame(conn: psycopg.Connection, table: str, ddl: str, frame: pd.DataFrame) -> None:
    """Create temporary ``table`` (``ddl`` column definitions in ``frame``'s column order,
    dropped at commit) and bulk-load ``frame`` with :func:`globalmart.db.copy_arrow` (no Python
    work per row; for the large per-event tables). List values become PostgreSQL array
    literals, decimals text."""
    conn.execute(f"CREATE TEMP TABLE {table} ({ddl}) ON COMMIT DROP")
    if frame.empty:
        return
    frame = frame.copy()
    for name in frame.columns:
        if isinstance(frame[name].iloc[0], list):
            frame[name] = ["{" + ",".join(f'"{v}"' for v in values) + "}"
                           for values in frame[name]]
        elif isinstance(frame[name].iloc[0], Decimal):  # as text: Arrow infers decimals slowly
            frame[name] = [None if v is None else str(v) for v in frame[name]]
    copy_arrow(conn, sql.Identifier(table), pa.Table.from_pandas(frame, preserve_index=False))


@dataclass
class BatchResult:
    """What a sink did with one micro-batch: rows written, and per topic the records it read
    and the highest event time of the events it kept."""

    rows: int = 0
    max_event_time: dict[str, datetime] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)


class BatchStats:
    """:class:`BatchResult` per (query, batch), read by the pipeline-metrics listener."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, int], BatchResult] = {}
        self._lock = threading.Lock()

    def record(self, query_name: str, batch_id: int, result: BatchResult) -> None:
        """Remember what a batch did."""
        with self._lock:
            self._results[(query_name, batch_id)] = result

    def pop(self, query_name: str, batch_id: int) -> BatchResult | None:
        """What a batch did (once), or None if it recorded nothing."""
        with self._lock:
            return self._results.pop((query_name, batch_id), None)


def _alert(alert_type: str, severity: str, entity_id: str, message: str, key: str) -> Alert:
    return Alert(alert_id=uuid.uuid5(ALERT_NAMESPACE, key), alert_type=alert_type,
                 severity=severity, entity_id=entity_id, message=message,  # type: ignore[arg-type]
                 created_at=datetime.now(UTC))


def insert_alerts(conn: psycopg.Connection, alerts: Sequence[Alert]) -> None:
    """Insert alerts (idempotent by alert_id)."""
    if alerts:
        conn.cursor().executemany(
            "INSERT INTO public.alerts (alert_id, alert_type, severity, entity_id, message, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (alert_id) DO NOTHING",
            [(a.alert_id, a.alert_type, a.severity, a.entity_id, a.message, a.created_at)
             for a in alerts])


def publish_alerts(writer: TopicWriter, alerts: Sequence[Alert]) -> None:
    """Produce alerts to the ``alerts`` topic (key: the entity)."""
    writer.send_all(ALERTS_TOPIC, ((a.entity_id, a.model_dump_json()) for a in alerts))


# --- Dead letters -----------------------------------------------------------------------------

def dead_letters(validated: pd.DataFrame, rejected_at: datetime) -> list[DeadLetter]:
    """The rejected records of a validated batch as dead letters."""
    return [DeadLetter(topic=r["topic"], partition=r["kafka_partition"],
                       offset=r["kafka_offset"], reason=r["reason"], payload=r["payload"],
                       rejected_at=rejected_at)
            for r in frame_rows(rejected(validated),
                                ["topic", "kafka_partition", "kafka_offset", "reason", "payload"])]


def write_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Upsert dead letters (idempotent by topic, partition and offset)."""
    columns = ["topic", "kafka_partition", "kafka_offset", "reason", "payload", "rejected_at"]
    copy_temp(conn, "tmp_dead_letter",
              "topic text, kafka_partition int, kafka_offset bigint, reason text, payload text, "
              "rejected_at timestamptz", columns,
              ({"topic": d.topic, "kafka_partition": d.partition, "kafka_offset": d.offset,
                "reason": d.reason, "payload": d.payload.replace("\x00", "\ufffd"),
                "rejected_at": d.rejected_at} for d in letters))
    conn.execute(f"INSERT INTO public.dead_letter ({', '.join(columns)}) "
                 f"SELECT {', '.join(columns)} FROM tmp_dead_letter "
                 "ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING")


# --- Sales, anomalies and stock sold ----------------------------------------------------------

SALES_COLUMNS = ["window_start", "window_end", "category", "country", "total_amount",
                 "transaction_count", "units_sold"]


def add_sales(conn: psycopg.Connection, table: str, rows: Sequence[dict]) -> None:
    """Add a batch's sums into ``table`` (sales_metrics or sales_metrics_hourly)."""
    if not rows:
        return
    copy_temp(conn, "tmp_sales",
              "window_start timestamptz, window_end timestamptz, category text, country text, "
              "total_amount numeric(14,2), transaction_count bigint, units_sold bigint",
              SALES_COLUMNS, rows)
    conn.execute(f"""
        INSERT INTO {table} AS m (window_start, window_end, category, country, total_amount,
                                  transaction_count, avg_transaction_value, units_sold, updated_at)
        SELECT window_start, window_end, category, country, total_amount, transaction_count,
               round(total_amount / transaction_count, 2), units_sold, now()
        FROM tmp_sales ORDER BY window_start, category, country
        ON CONFLICT (window_start, category, country) DO UPDATE SET
            total_amount = m.total_amount + EXCLUDED.total_amount,
            transaction_count = m.transaction_count + EXCLUDED.transaction_count,
            units_sold = m.units_sold + EXCLUDED.units_sold,
            avg_transaction_value = round((m.total_amount + EXCLUDED.total_amount)
                                          / (m.transaction_count + EXCLUDED.transaction_count), 2),
            updated_at = now()""")
    conn.execute("DROP TABLE tmp_sales")


def add_orders(conn: psycopg.Connection, rows: Sequence[dict]) -> None:
    """Add a batch's order figures into ``order_metrics``."""
    if not rows:
        return
    copy_temp(conn, "tmp_orders",
              "window_start timestamptz, window_end timestamptz, country text, order_count bigint,"
              " revenue numeric(14,2), billed_amount numeric(14,2), units_sold bigint",
              ORDER_METRIC_COLUMNS, rows)
    conn.execute("""
        INSERT INTO public.order_metrics AS m (window_start, window_end, country, order_count,
                                               revenue, billed_amount, units_sold, updated_at)
        SELECT window_start, window_end, country, order_count, revenue, billed_amount,
               units_sold, now()
        FROM tmp_orders ORDER BY window_start, country
        ON CONFLICT (window_start, country) DO UPDATE SET
            order_count = m.order_count + EXCLUDED.order_count,
            revenue = m.revenue + EXCLUDED.revenue,
            billed_amount = m.billed_amount + EXCLUDED.billed_amount,
            units_sold = m.units_sold + EXCLUDED.units_sold,
            updated_at = now()""")


_ANOMALY_RETURNING = "RETURNING transaction_id, user_id, anomaly_type, anomaly_score, description"


def insert_rule_anomalies(conn: psycopg.Connection, rows: Sequence[dict]) -> list[tuple]:
    """Insert rule anomalies; return the ones that are new."""
    if not rows:
        return []
    copy_temp(conn, "tmp_anomalies",
              "transaction_id text, user_id text, amount numeric(14,2), anomaly_score float8, "
              "anomaly_type text, description text, event_time timestamptz",
              ANOMALY_COLUMNS, rows)
    return conn.execute(f"""
        INSERT INTO public.transaction_anomalies (transaction_id, user_id, amount, anomaly_score,
                                                  anomaly_type, detected_at, description,
                                                  event_time)
        SELECT transaction_id, user_id, amount, anomaly_score, anomaly_type, now(), description,
               event_time FROM tmp_anomalies
        ON CONFLICT (transaction_id, anomaly_type) DO NOTHING
        {_ANOMALY_RETURNING}""").fetchall()


def detect_rapid_fire(conn: psycopg.Connection, rows: Sequence[dict],
                      prune_before: datetime | None) -> list[tuple]:
    """Record the batch's transactions per user and flag every transaction that is at least
    the 5th of its user within (t − 60 s, t], counting earlier batches too; a late transaction
    can make a later one rapid fire. Returns the new anomalies."""
    if not rows:
        return []
    copy_temp(conn, "tmp_user_tx",
              "user_id text, transaction_id text, event_time timestamptz, amount numeric(14,2)",
              USER_TX_COLUMNS, rows)
    conn.execute("""
        INSERT INTO stream_state.recent_transactions (user_id, transaction_id, event_time, amount)
        SELECT user_id, transaction_id, event_time, amount FROM tmp_user_tx
        ON CONFLICT DO NOTHING""")
    params = {"window": RAPID_FIRE_WINDOW_SECONDS, "count": RAPID_FIRE_COUNT}
    found = conn.execute(f"""
        WITH affected AS (
            SELECT user_id, min(event_time) AS lo,
                   max(event_time) + make_interval(secs => %(window)s) AS hi
            FROM tmp_user_tx GROUP BY user_id),
        candidates AS (
            SELECT r.user_id, r.transaction_id, r.event_time, r.amount
            FROM stream_state.recent_transactions r JOIN affected a USING (user_id)
            WHERE r.event_time >= a.lo AND r.event_time < a.hi),
        counted AS (
            SELECT c.*, (SELECT count(*) FROM stream_state.recent_transactions o
                         WHERE o.user_id = c.user_id
                           AND o.event_time > c.event_time - make_interval(secs => %(window)s)
                           AND o.event_time <= c.event_time) AS n
            FROM candidates c)
        INSERT INTO public.transaction_anomalies (transaction_id, user_id, amount, anomaly_score,
                                                  anomaly_type, detected_at, description,
                                                  event_time)
        SELECT transaction_id, user_id, amount,
               least(1.0, 0.5 + 0.5 * (n - %(count)s) / %(count)s::float8), 'rapid_fire', now(),
               n || ' transactions by this user within ' || %(window)s || ' s', event_time
        FROM counted WHERE n >= %(count)s
        ON CONFLICT (transaction_id, anomaly_type) DO NOTHING
        {_ANOMALY_RETURNING}""", params).fetchall()
    if prune_before is not None:
        conn.execute("DELETE FROM stream_state.recent_transactions WHERE event_time < %s",
                     (prune_before,))
    return found


def apply_stock_movements(conn: psycopg.Connection, rows: Sequence[dict], query_name: str,
                          batch_id: int) -> list[Alert]:
    """Add movements to the per-product counters, refresh ``inventory_status`` of the products
    concerned (and of products that reached ``source.products`` since), and return an alert
    for each product whose status got worse into low, critical or out."""
    if not rows:
        return []
    copy_temp(conn, "tmp_moves",
              "product_id text, units_sold bigint, units_restocked bigint, units_adjusted bigint",
              MOVEMENT_COLUMNS, rows)
    conn.execute("""
        INSERT INTO stream_state.inventory_counters AS c
            (product_id, units_sold, units_restocked, units_adjusted)
        SELECT product_id, units_sold, units_restocked, units_adjusted
        FROM tmp_moves ORDER BY product_id
        ON CONFLICT (product_id) DO UPDATE SET
            units_sold = c.units_sold + EXCLUDED.units_sold,
            units_restocked = c.units_restocked + EXCLUDED.units_restocked,
            units_adjusted = c.units_adjusted + EXCLUDED.units_adjusted""")
    unknown = conn.execute("""
        SELECT count(*) FROM tmp_moves t
        WHERE NOT EXISTS (SELECT 1 FROM source.products p WHERE p.product_id = t.product_id)
        """).fetchone()[0]  # type: ignore[index]
    if unknown:
        log.warning("%s batch %d: %d products are not in source.products yet; their movements "
                    "are kept and their stock appears once they are", query_name, batch_id,
                    unknown)
    worse = conn.execute("""
        WITH touched AS (
            SELECT product_id FROM tmp_moves
            UNION
            SELECT c.product_id FROM stream_state.inventory_counters c
            WHERE NOT EXISTS (SELECT 1 FROM public.inventory_status s
                              WHERE s.product_id = c.product_id)),
        fresh AS (
            SELECT c.product_id, p.product_name, p.category, p.initial_stock, c.units_sold,
                   c.units_restocked, c.units_adjusted,
                   p.initial_stock - c.units_sold + c.units_restocked + c.units_adjusted
                       AS current_stock
            FROM touched t
            JOIN stream_state.inventory_counters c USING (product_id)
            JOIN source.products p USING (product_id)),
        graded AS (
            SELECT f.*, stream_state.stock_status(f.current_stock) AS status,
                   coalesce(s.status, stream_state.stock_status(f.initial_stock)) AS old_status
            FROM fresh f LEFT JOIN public.inventory_status s USING (product_id)),
        written AS (
            INSERT INTO public.inventory_status AS s
                (product_id, product_name, category, initial_stock, units_sold, units_restocked,
                 units_adjusted, current_stock, status, updated_at)
            SELECT product_id, product_name, category, initial_stock, units_sold,
                   units_restocked, units_adjusted, current_stock, status, now()
            FROM graded ORDER BY product_id
            ON CONFLICT (product_id) DO UPDATE SET
                product_name = EXCLUDED.product_name, category = EXCLUDED.category,
                initial_stock = EXCLUDED.initial_stock, units_sold = EXCLUDED.units_sold,
                units_restocked = EXCLUDED.units_restocked,
                units_adjusted = EXCLUDED.units_adjusted,
                current_stock = EXCLUDED.current_stock, status = EXCLUDED.status,
                updated_at = now()
            RETURNING product_id)
        SELECT product_id, product_name, current_stock, old_status, status FROM graded
        WHERE stream_state.status_rank(status) > stream_state.status_rank(old_status)
        ORDER BY product_id""").fetchall()
    return [
        _alert(f"stock_{status}", "warning" if status == "low" else "critical", product_id,
               f"{name} ({product_id}): stock {stock} is {status} (was {old})",
               f"stock:{query_name}:{batch_id}:{product_id}:{status}")
        for product_id, name, stock, old, status in worse
    ]


def anomaly_alerts(found: Iterable[tuple], min_score: float) -> list[Alert]:
    """A critical alert for each new anomaly scoring at least ``min_score``."""
    return [
        _alert(f"anomaly_{kind}", "critical", transaction_id,
               f"transaction {transaction_id} of user {user_id}: {description} "
               f"(score {score:.2f})", f"anomaly:{transaction_id}:{kind}")
        for transaction_id, user_id, kind, score, description in found
        if score >= min_score
    ]


# --- Sessions ---------------------------------------------------------------------------------

_SESSION_PART = ("session_id, user_id, session_start, session_end, page_views, cart_adds, "
                 "cart_removes, purchases, revenue, last_cart_add_at, purchased_after_last_add, "
                 "purchase_times")
_STORED_PART = "s." + _SESSION_PART.removeprefix("session_id, ").replace(", ", ", s.")

# The stored sessions a batch's pieces can join (within the gap of a piece of their session id)
# and the pieces, numbered into islands as Spark's session windows merge them: ordered by start,
# a part opens a new island when it starts ``gap`` or more after the latest end before it.
# Only islands holding a piece are kept, with their start and latest cart add.
_SESSION_ISLANDS = f"""
    CREATE TEMP TABLE tmp_parts ON COMMIT DROP AS
    WITH bounds AS (
        SELECT session_id, min(session_start) - %(gap)s AS lo, max(session_end) + %(gap)s AS hi
        FROM tmp_pieces GROUP BY session_id),
    parts AS (
        SELECT s.session_id COLLATE "C", {_STORED_PART}, false AS fresh
        FROM public.session_metrics s JOIN bounds b USING (session_id)
        WHERE s.session_start <= b.hi AND s.session_end >= b.lo
        UNION ALL
        SELECT {_SESSION_PART}, true FROM tmp_pieces),
    reached AS (
        SELECT *, max(session_end) OVER (PARTITION BY session_id ORDER BY session_start, fresh
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
        FROM parts),
    islands AS (
        SELECT *, count(*) FILTER (WHERE reach IS NULL OR session_start >= reach + %(gap)s)
                      OVER (PARTITION BY session_id ORDER BY session_start, fresh
                            ROWS UNBOUNDED PRECEDING) AS island
        FROM reached),
    judged AS (
        SELECT *, bool_or(fresh) OVER w AS touched, max(last_cart_add_at) OVER w AS last_add,
               min(session_start) OVER w AS island_start
        FROM islands WINDOW w AS (PARTITION BY session_id, island))
    SELECT * FROM judged WHERE touched"""

# One row per island. A purchase within 15 minutes after the island's last cart add is found
# among the purchase times kept, or was found before by the part holding that add (its older
# purchase times may have been forgotten). Kept: purchase times at or after both the last add
# and ``forget`` (no later event is older), the only ones a later add or merge can still need.
_SESSION_WRITE = """
    WITH merged AS (
        SELECT session_id, island,
               (array_agg(user_id ORDER BY session_start, fresh))[1] AS user_id,
               min(session_start) AS session_start, max(session_end) AS session_end,
               sum(page_views) AS page_views, sum(cart_adds) AS cart_adds,
               sum(cart_removes) AS cart_removes, sum(purchases) AS purchases,
               sum(revenue) AS revenue, max(last_add) AS last_cart_add_at,
               coalesce(bool_or(purchased_after_last_add)
                        FILTER (WHERE last_cart_add_at = last_add), false) AS found_before
        FROM tmp_parts GROUP BY session_id, island),
    purchased AS (
        SELECT session_id, island,
               bool_or(t BETWEEN last_add AND last_add + make_interval(mins => %(minutes)s))
                   AS after_add,
               array_agg(t ORDER BY t) FILTER (WHERE t >= greatest(last_add, %(forget)s)) AS kept
        FROM tmp_parts, unnest(purchase_times) AS t GROUP BY session_id, island)
    INSERT INTO public.session_metrics (session_id, user_id, session_start, session_end,
                                        duration_seconds, page_views, cart_adds, cart_removes,
                                        purchases, revenue, converted, last_cart_add_at,
                                        purchased_after_last_add, purchase_times, updated_at)
    SELECT m.session_id, m.user_id, m.session_start, m.session_end,
           extract(epoch FROM m.session_end - m.session_start), m.page_views, m.cart_adds,
           m.cart_removes, m.purchases, m.revenue, m.purchases > 0, m.last_cart_add_at,
           m.found_before OR coalesce(p.after_add, false), coalesce(p.kept, '{}'), now()
    FROM merged m LEFT JOIN purchased p USING (session_id, island)
    ORDER BY m.session_id, m.session_start
    ON CONFLICT (session_id, session_start) DO UPDATE SET
        user_id = EXCLUDED.user_id, session_end = EXCLUDED.session_end,
        duration_seconds = EXCLUDED.duration_seconds, page_views = EXCLUDED.page_views,
        cart_adds = EXCLUDED.cart_adds, cart_removes = EXCLUDED.cart_removes,
        purchases = EXCLUDED.purchases, revenue = EXCLUDED.revenue,
        converted = EXCLUDED.converted, last_cart_add_at = EXCLUDED.last_cart_add_at,
        purchased_after_last_add = EXCLUDED.purchased_after_last_add,
        purchase_times = EXCLUDED.purchase_times, updated_at = EXCLUDED.updated_at"""


def stage_session_pieces(conn: psycopg.Connection, pieces: pd.DataFrame) -> None:
    """Load a batch's session pieces (:func:`session_metrics`) into the temporary table
    ``tmp_pieces`` for :func:`merge_staged_sessions`."""
    copy_frame(conn, "tmp_pieces",
               'session_id text COLLATE "C", user_id text, session_start timestamptz,'
               " session_end timestamptz, page_views int, cart_adds int, cart_removes int,"
               " purchases int,"
               " revenue numeric(14,2), last_cart_add_at timestamptz,"
               " purchased_after_last_add boolean, purchase_times timestamptz[]",
               pieces[_SESSION_PART.split(", ")])


def merge_staged_sessions(conn: psycopg.Connection, forget: datetime) -> int:
    """Merge the staged session pieces into ``session_metrics``, in PostgreSQL, the way Spark's
    session windows merge: two parts of a session_id belong together when the later one starts
    less than the gap after the ones before it end. The stored rows merged are replaced by one
    row per merged session. Purchase times before ``forget`` (no later event of the query is
    older) are dropped when they can no longer decide the abandonment test. Returns the session
    rows written."""
    # No row locks: the batch's transaction holds its query's progress row (load_watermark),
    # and only the realtime query writes sessions.
    conn.execute(_SESSION_ISLANDS, {"gap": SESSION_GAP})
    conn.execute("DELETE FROM public.session_metrics s USING tmp_parts p "
                 "WHERE NOT p.fresh AND p.session_start > p.island_start "
                 "AND s.session_id = p.session_id AND s.session_start = p.session_start")
    return conn.execute(_SESSION_WRITE, {"minutes": ABANDONMENT_MINUTES,
                                         "forget": forget}).rowcount


def decide_abandonment(conn: psycopg.Connection, query_name: str, newest: datetime,
                       watermark: timedelta) -> int:
    """Record abandoned carts whose 15 minutes ended behind the watermark (the highest event
    time of the previous batches minus the allowed lateness: later events are dropped, so the
    decision is final), then advance the query's progress. Returns the carts recorded."""
    previous = conn.execute(
        "SELECT max_event_time, decided_until FROM stream_state.query_progress "
        "WHERE query_name = %s", (query_name,)).fetchone()
    recorded = 0
    decided_until = None
    if previous is not None:
        decided_until = previous[0] - watermark
        recorded = conn.execute("""
            INSERT INTO public.cart_abandonment (session_id, session_start, user_id,
                                                 last_cart_event_at, items_added, detected_at)
            SELECT session_id, session_start, user_id, last_cart_add_at, cart_adds, now()
            FROM public.session_metrics
            WHERE last_cart_add_at IS NOT NULL AND NOT purchased_after_last_add
              AND last_cart_add_at + make_interval(mins => %(minutes)s) < %(until)s
              AND (%(since)s::timestamptz IS NULL
                   OR last_cart_add_at + make_interval(mins => %(minutes)s) >= %(since)s)
            ON CONFLICT (session_id, session_start) DO NOTHING""",
            {"minutes": ABANDONMENT_MINUTES, "until": decided_until,
             "since": previous[1]}).rowcount
    advance_progress(conn, query_name, newest, decided_until)
    return recorded


def advance_progress(conn: psycopg.Connection, query_name: str, newest: datetime,
                     decided_until: datetime | None = None) -> None:
    """Raise the query's highest event time to ``newest`` (and record how far abandonment was
    decided)."""
    conn.execute("""
        INSERT INTO stream_state.query_progress AS q (query_name, max_event_time, decided_until)
        VALUES (%s, %s, %s)
        ON CONFLICT (query_name) DO UPDATE SET
            max_event_time = greatest(q.max_event_time, EXCLUDED.max_event_time),
            decided_until = coalesce(EXCLUDED.decided_until, q.decided_until)""",
                 (query_name, newest, decided_until))


# --- De-duplication ---------------------------------------------------------------------------

def load_watermark(conn: psycopg.Connection, query_name: str,
                   lateness: timedelta) -> datetime | None:
    """The query's watermark: its highest event time so far minus ``lateness`` (None before
    its first events). The row is locked until the batch commits."""
    row = conn.execute("SELECT max_event_time FROM stream_state.query_progress "
                       "WHERE query_name = %s FOR UPDATE", (query_name,)).fetchone()
    return None if row is None else row[0] - lateness


def rotate_seen_generations(conn: psycopg.Connection, watermark: datetime | None) -> int:
    """The current generation of ``stream_state.seen_events``. Once every id of the older
    generation is behind ``watermark`` (or it is empty and the current one is not), the older
    one is emptied and becomes current; the other, which no longer changes, is analysed so
    that the probes into it are planned on its real size. The rows stay locked until the batch
    commits."""
    (older, _, older_newest), (current, _, newest) = conn.execute(
        "SELECT generation, current, newest FROM stream_state.seen_generations "
        "ORDER BY current FOR UPDATE").fetchall()
    if newest is None or not (older_newest is None
                              or watermark is not None and older_newest < watermark):
        return current
    if older_newest is not None:
        conn.execute(sql.SQL("TRUNCATE {}").format(_seen_partition(older)))
    conn.execute("UPDATE stream_state.seen_generations "
                 "SET current = NOT current, newest = CASE WHEN current THEN newest END")
    conn.execute(sql.SQL("ANALYZE {}").format(_seen_partition(current)))
    return older


def _seen_partition(generation: int) -> sql.Identifier:
    return sql.Identifier("stream_state", f"seen_events_{generation}")


def claim_events(conn: psycopg.Connection, events: pd.DataFrame,
                 watermark: datetime | None) -> pd.DataFrame:
    """The ``events`` (one copy each) whose (topic, event_id) is not in
    ``stream_state.seen_events``; they are recorded in its current generation (see
    :func:`rotate_seen_generations`). Every id at or after the watermark is remembered: a
    generation is emptied only once all its ids are behind it."""
    current = rotate_seen_generations(conn, watermark)
    if events.empty:
        return events
    copy_frame(conn, "tmp_seen", "topic text, event_id uuid, event_time timestamptz",
               events[["topic", "event_id", "event_time"]])
    seen = conn.execute(sql.SQL(
        "WITH new AS (INSERT INTO stream_state.seen_events (generation, topic, event_id, "
        "event_time) SELECT %(current)s, topic, event_id, event_time FROM tmp_seen t "
        "WHERE NOT EXISTS (SELECT FROM {older} o "
        "WHERE o.event_id = t.event_id AND o.topic = t.topic) "
        "ORDER BY event_id ON CONFLICT DO NOTHING RETURNING topic, event_id) "
        "SELECT t.topic, t.event_id::text FROM tmp_seen t "
        "WHERE NOT EXISTS (SELECT FROM new n WHERE n.topic = t.topic AND n.event_id = t.event_id)"
    ).format(older=_seen_partition(1 - current)), {"current": current}).fetchall()
    conn.execute("DROP TABLE tmp_seen")
    conn.execute("UPDATE stream_state.seen_generations SET newest = greatest(newest, %s) "
                 "WHERE generation = %s", (events["event_time"].max(), current))
    if not seen:
        return events
    again = pd.MultiIndex.from_tuples(seen)
    return events[~pd.MultiIndex.from_arrays([events["topic"], events["event_id"]]).isin(again)]


def accept_batch(conn: psycopg.Connection, query_name: str, validated: pd.DataFrame,
                 lateness: timedelta) -> tuple[pd.DataFrame, pd.DataFrame, BatchResult]:
    """The valid events of a batch that are on time and new to the query, those behind the
    watermark (one copy each; counted in a warning), and a result holding the batch's records
    and its on-time events' highest event time per topic."""
    watermark = load_watermark(conn, query_name, lateness)
    candidates = valid(validated)
    timely = on_time(candidates, watermark)
    late = first_copies(candidates.drop(timely.index))
    if len(late):
        log.warning("%s: %d events older than the watermark %s: kept for the raw layer only",
                    query_name, len(late), watermark)
    events = claim_events(conn, first_copies(timely), watermark)
    newest = events.groupby("topic")["event_time"].max()
    result = BatchResult(max_event_time={t: v.to_pydatetime() for t, v in newest.items()},
                         records=validated["topic"].value_counts().to_dict())
    return events, late, result


# --- The realtime query ----------------------------------------------------------------------

class RealtimeSink:
    """foreachBatch of the realtime query over the four input topics. A batch's records are
    collected once, validated once (rejects to the ``dead_letter`` topic and table),
    de-duplicated by (topic, event_id) within the watermark, and turned into sales and order
    metrics, anomalies, stock, alerts, sessions and buffered raw-layer rows, all committed in
    one PostgreSQL transaction."""

    def __init__(self, query_name: str, postgres: Postgres, writer: TopicWriter | None,
                 notifier: Notifier, stats: BatchStats, lateness: timedelta,
                 critical_score: float) -> None:
        self.query_name, self.postgres, self.writer, self.notifier = (
            query_name, postgres, writer, notifier)
        self.stats, self.lateness, self.critical_score = stats, lateness, critical_score

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        records = collect_records(batch)
        log.debug("%s batch %d: %d records collected in %.0f ms", self.query_name, batch_id,
                  records.num_rows, (time.monotonic() - started) * 1000)
        self.process(records, batch_id)

    def process(self, records: pa.Table, batch_id: int) -> BatchResult:
        """Validate, de-duplicate, compute and commit one batch of Kafka records. Python's
        cyclic garbage collector is paused meanwhile: the batch's many short-lived objects
        would otherwise trigger full collections over the driver's heap (~10 % of the time);
        what they leave is collected after the batch."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._process(records, batch_id)
        finally:
            if collecting:
                gc.enable()

    def _process(self, records: pa.Table, batch_id: int) -> BatchResult:
        started = time.monotonic()
        validated = validate(records)
        letters = dead_letters(validated, datetime.now(UTC))
        validated_at = time.monotonic()
        outcome: list[BatchResult] = []
        alerts: list[Alert] = []

        def work(conn: psycopg.Connection) -> None:
            outcome.clear()
            alerts.clear()
            events, late, result = accept_batch(conn, self.query_name, validated,
                                                self.lateness)
            if letters:
                if self.writer is not None:
                    self.writer.send_all(DEAD_LETTER_TOPIC,
                                         ((d.topic, d.model_dump_json()) for d in letters))
                write_dead_letters(conn, letters)
            result.rows = len(letters) + self.write_events(conn, events, late, batch_id, alerts)
            if self.writer is not None:
                publish_alerts(self.writer, alerts)
            outcome.append(result)

        if self.postgres.run_batch(self.query_name, batch_id, work):
            self.notifier.notify(alerts)
        result = outcome[0] if outcome else BatchResult()
        self.stats.record(self.query_name, batch_id, result)
        log.debug("%s batch %d: %d records (%d rejected) validated in %.0f ms; %d rows computed "
                  "and committed in %.0f ms", self.query_name, batch_id, records.num_rows,
                  len(letters), (validated_at - started) * 1000, result.rows,
                  (time.monotonic() - validated_at) * 1000)
        return result

    def write_events(self, conn: psycopg.Connection, events: pd.DataFrame, late: pd.DataFrame,
                     batch_id: int, alerts: list[Alert]) -> int:
        """Write what the accepted ``events`` change, buffer them and the ``late`` ones for the
        raw layer, append the alerts raised, and return the rows written. The sessions are
        merged (in PostgreSQL, on a second thread) while the other figures and the raw-layer
        rows are computed."""
        raw = pd.concat([events, late])
        if events.empty:
            return buffer_raw(conn, raw_rows(raw, batch_id))
        newest = events["event_time"].max().to_pydatetime()
        stage_session_pieces(conn, session_metrics(session_activity(events)))
        with ThreadPoolExecutor(max_workers=1) as pool:
            merging = pool.submit(merge_staged_sessions, conn, newest - self.lateness)
            transactions = of_topic(events, "transactions")
            order_rows, lines = orders(transactions), transaction_lines(transactions)
            minute = frame_rows(sales_metrics(lines, MINUTE), SALES_COLUMNS)
            hourly = frame_rows(sales_metrics(lines, HOUR), SALES_COLUMNS)
            order_figures = frame_rows(order_metrics(order_rows), ORDER_METRIC_COLUMNS)
            rules = frame_rows(rule_anomalies(order_rows), ANOMALY_COLUMNS)
            users = frame_rows(user_transactions(order_rows), USER_TX_COLUMNS)
            moves = frame_rows(stock_changes(lines, of_topic(events, "inventory_events")),
                               MOVEMENT_COLUMNS)
            buffered = raw_rows(raw, batch_id)
            sessions = merging.result()

        add_sales(conn, "public.sales_metrics", minute)
        add_sales(conn, "public.sales_metrics_hourly", hourly)
        add_orders(conn, order_figures)
        found = insert_rule_anomalies(conn, rules)
        prune_before = newest - self.lateness - timedelta(seconds=RAPID_FIRE_WINDOW_SECONDS)
        found += detect_rapid_fire(conn, users, prune_before)
        alerts.extend(anomaly_alerts(found, self.critical_score))
        alerts.extend(apply_stock_movements(conn, moves, self.query_name, batch_id))
        insert_alerts(conn, alerts)
        sessions += decide_abandonment(conn, self.query_name, newest, self.lateness)
        return (len(minute) + len(hourly) + len(order_figures) + len(rules) + len(moves)
                + sessions + buffer_raw(conn, buffered))


# --- Raw layer --------------------------------------------------------------------------------

def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def raw_rows(events: pd.DataFrame, batch_id: int) -> list[tuple]:
    """The accepted ``events`` of batch ``batch_id`` as rows of ``stream_state.raw_buffer``:
    one Arrow blob per topic and event date."""
    rows = []
    for topic in INPUT_TOPICS:
        table = accepted(events, topic)
        for day in sorted(table["event_date"].unique().to_pylist()):
            part = table.filter(pc.equal(table["event_date"], day)).drop_columns("event_date")
            rows.append((batch_id, topic, day, part.num_rows,
                         pc.max(part["event_time"]).as_py(), _ipc(part)))
    return rows


def buffer_raw(conn: psycopg.Connection, rows: Sequence[tuple]) -> int:
    """Add :func:`raw_rows` to ``stream_state.raw_buffer``, in the batch's transaction;
    :class:`RawLayer` turns them into Parquet. Returns the events buffered."""
    if rows:
        conn.cursor().executemany(
            "INSERT INTO stream_state.raw_buffer (batch_id, topic, event_date, row_count, "
            "max_event_time, data) VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return sum(row[3] for row in rows)


def _first_batch(name: str) -> int | None:
    """The first batch id in a raw file name ``part-<first>-<last>.parquet``."""
    parts = name.removesuffix(".parquet").split("-")
    return int(parts[1]) if len(parts) == 3 and parts[0] == "part" and parts[1].isdigit() \
        else None


def write_raw_file(lake: str, topic: str, day: date, first: int, last: int,
                   table: pa.Table) -> str:
    """Write one raw-layer file, ``<lake>/raw/<topic>/event_date=<day>/part-<first>-<last>
    .parquet``, under a hidden name renamed into place (readers never see a partial file).
    Files of the directory that start at or after ``first`` are left from a flush that did not
    commit (their rows are still buffered, so they are in ``table`` too) and are removed."""
    fs, root = filesystem(raw_path(lake, topic))
    directory = f"{root}/event_date={day.isoformat()}"
    fs.create_dir(directory, recursive=True)
    for info in fs.get_file_info(pa_fs.FileSelector(directory)):
        start = _first_batch(info.base_name)
        if start is not None and start >= first:
            fs.delete_file(info.path)
    name = f"part-{first:010d}-{last:010d}.parquet"
    pq.write_table(table, f"{directory}/.{name}.tmp", filesystem=fs)
    fs.move(f"{directory}/.{name}.tmp", f"{directory}/{name}")
    return f"{directory}/{name}"


class RawLayer:
    """The Parquet raw layer the warehouse reads: :meth:`flush` moves what the realtime query
    buffered into one file per topic and day, exactly once (the files are named by the range
    of batches they hold and the buffer rows are deleted in the same transaction), and records
    a ``pipeline_metrics`` row per topic under the query name ``raw``."""

    def __init__(self, db_url: str, lake: str) -> None:
        self.postgres, self.lake = Postgres(db_url), lake

    def flush(self) -> dict[str, int]:
        """Write what is buffered; return the events written per topic."""
        started = time.monotonic()
        written: dict[str, int] = {}

        def work(conn: psycopg.Connection) -> None:
            written.clear()
            buffered = conn.execute(
                "SELECT batch_id, topic, event_date, row_count, max_event_time, data "
                "FROM stream_state.raw_buffer ORDER BY batch_id, topic, event_date "
                "FOR UPDATE").fetchall()
            if not buffered:
                return
            first, last = buffered[0][0], buffered[-1][0]
            blobs: dict[tuple[str, date], list[bytes]] = defaultdict(list)
            newest: dict[str, datetime] = {}
            for _, topic, day, count, max_time, data in buffered:
                blobs[(topic, day)].append(data)
                written[topic] = written.get(topic, 0) + count
                newest[topic] = max(newest.get(topic, max_time), max_time)
            for (topic, day), parts in blobs.items():
                table = pa.concat_tables(pa.ipc.open_stream(p).read_all() for p in parts)
                write_raw_file(self.lake, topic, day, first, last, table)
            conn.execute("DELETE FROM stream_state.raw_buffer WHERE batch_id <= %s", (last,))
            elapsed = max(time.monotonic() - started, 1e-3)
            write_metrics(conn, [{
                "query_name": RAW_QUERY, "batch_id": last, "topic": topic,
                "processed_at": datetime.now(UTC), "input_rows": count,
                "input_rows_per_second": 0.0, "processed_rows_per_second": count / elapsed,
                "batch_duration_ms": int(elapsed * 1000), "lag_records": 0,
                "rows_written": count, "max_event_time": newest[topic]}
                for topic, count in sorted(written.items())])

        self.postgres.run(work)
        return written

    def close(self) -> None:
        """Close the database connection."""
        self.postgres.close()
