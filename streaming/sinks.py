"""Where the streaming queries write: PostgreSQL (psycopg 3), Kafka topics and Parquet.

Every PostgreSQL write of a micro-batch happens in one transaction. Additive writes (sales
sums, stock counters, merged sessions) are made idempotent by a row in
``stream_state.batch_commits`` written in that same transaction: a batch Spark replays after a
crash finds its row and is skipped. Plain upserts (dead letters) are idempotent by their keys.
Messages for Kafka topics are produced and flushed before the transaction commits, with
deterministic ids, so a replay may repeat a message but never loses one.

Rows reach PostgreSQL through ``COPY`` into a temporary table, then ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DecimalType, DoubleType, FloatType, TimestampType

from globalmart.contracts import ALERTS_TOPIC, DEAD_LETTER_TOPIC, Alert, DeadLetter
from streaming.notifier import Notifier
from streaming.schemas import raw_path
from streaming.transforms.anomalies import (
    ANOMALY_COLUMNS,
    RAPID_FIRE_COUNT,
    RAPID_FIRE_WINDOW_SECONDS,
    rule_anomalies,
    user_transactions,
)
from streaming.transforms.inventory import MOVEMENT_COLUMNS, stock_movements, units_sold
from streaming.transforms.parse import accepted, rejected
from streaming.transforms.sales import order_metrics, sales_metrics
from streaming.transforms.sessions import (
    ABANDONMENT_MINUTES,
    SESSION_COLUMNS,
    merge_sessions,
    session_activity,
    session_metrics,
)

log = logging.getLogger(__name__)

ALERT_NAMESPACE = uuid.UUID("6f1d6a52-6c0b-4b8e-9a57-2f0c1c3e8d11")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)


# --- Spark rows to Python ---------------------------------------------------------------------

def _micros_to_datetime(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def collect_rows(df: DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Collect ``columns`` of ``df`` to the driver as dicts. Timestamps arrive as UTC-aware
    datetimes whatever the driver's time zone (they travel as epoch microseconds)."""
    types = {f.name: f.dataType for f in df.schema.fields}
    selected = []
    for name in columns:
        dtype = types[name]
        if isinstance(dtype, TimestampType):
            selected.append(F.unix_micros(name).alias(name))
        elif isinstance(dtype, ArrayType) and isinstance(dtype.elementType, TimestampType):
            selected.append(F.transform(name, F.unix_micros).alias(name))
        else:
            selected.append(F.col(name))
    rows = []
    for row in df.select(*selected).collect():
        record = row.asDict()
        for name in columns:
            dtype = types[name]
            if isinstance(dtype, TimestampType):
                record[name] = _micros_to_datetime(record[name])
            elif isinstance(dtype, ArrayType) and isinstance(dtype.elementType, TimestampType):
                record[name] = [_micros_to_datetime(v) for v in record[name] or []]
        rows.append(record)
    return rows


_JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "ignoreNullFields": "false"}


def collect_many(frames: dict[str, tuple[DataFrame, Sequence[str]]]
                 ) -> dict[str, list[dict[str, Any]]]:
    """Collect several small results of one micro-batch in a single Spark job (each job has a
    fixed cost): every frame's rows travel as JSON, decimals are read back exactly, floats as
    floats and timestamps (also in arrays) as UTC-aware datetimes."""
    parts = []
    for name, (frame, columns) in frames.items():
        parts.append(frame.select(
            F.lit(name).alias("frame"),
            F.to_json(F.struct(*[F.col(c) for c in columns]), _JSON_OPTIONS).alias("row")))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionAll(part)
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in frames}
    for frame_name, text in union.collect():
        found[frame_name].append(json.loads(text, parse_float=Decimal))
    for name, (frame, columns) in frames.items():
        types = {f.name: f.dataType for f in frame.schema.fields}
        for column in columns:
            dtype = types[column]
            if isinstance(dtype, TimestampType):
                for row in found[name]:
                    row[column] = _parse_time(row[column])
            elif isinstance(dtype, DecimalType):
                for row in found[name]:
                    if row[column] is not None:
                        row[column] = Decimal(row[column]).quantize(
                            Decimal(1).scaleb(-dtype.scale))
            elif isinstance(dtype, DoubleType | FloatType):
                for row in found[name]:
                    if row[column] is not None:
                        row[column] = float(row[column])
            elif isinstance(dtype, ArrayType) and isinstance(dtype.elementType, TimestampType):
                for row in found[name]:
                    row[column] = [_parse_time(v) for v in row[column] or []]
    return found


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


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
    the batch-commit protocol."""

    def __init__(self, url: str) -> None:
        self.url = url
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


def copy_temp(conn: psycopg.Connection, table: str, ddl: str, columns: Sequence[str],
              rows: Iterable[dict[str, Any]]) -> None:
    """Create temporary ``table`` (``ddl`` column definitions, dropped at commit) and COPY
    ``rows`` into it."""
    conn.execute(f"CREATE TEMP TABLE {table} ({ddl}) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


class BatchStats:
    """Rows written per (query, batch), read by the pipeline-metrics listener."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def record(self, query_name: str, batch_id: int, rows: int) -> None:
        """Remember how many rows a batch wrote."""
        with self._lock:
            self._rows[(query_name, batch_id)] = rows

    def pop(self, query_name: str, batch_id: int) -> int | None:
        """The rows a batch wrote (once), or None if it did not record any."""
        with self._lock:
            return self._rows.pop((query_name, batch_id), None)


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

class DeadLetterSink:
    """foreachBatch of validated records: rejected ones to the ``dead_letter`` topic and table."""

    def __init__(self, query_name: str, postgres: Postgres, writer: TopicWriter,
                 stats: BatchStats) -> None:
        self.query_name, self.postgres, self.writer, self.stats = (
            query_name, postgres, writer, stats)

    def __call__(self, validated: DataFrame, batch_id: int) -> None:
        rows = collect_rows(rejected(validated),
                            ["topic", "kafka_partition", "kafka_offset", "reason", "payload"])
        now = datetime.now(UTC)
        letters = [DeadLetter(topic=r["topic"], partition=r["kafka_partition"],
                              offset=r["kafka_offset"], reason=r["reason"],
                              payload=r["payload"], rejected_at=now) for r in rows]
        if letters:
            self.writer.send_all(DEAD_LETTER_TOPIC,
                                 ((d.topic, d.model_dump_json()) for d in letters))
            self.postgres.run(lambda conn: write_dead_letters(conn, letters))
            log.info("batch %d: %d records rejected to %s", batch_id, len(letters),
                     DEAD_LETTER_TOPIC)
        self.stats.record(self.query_name, batch_id, len(letters))


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
ORDER_COLUMNS = ["window_start", "window_end", "country", "order_count", "revenue",
                 "billed_amount", "units_sold"]
USER_TX_COLUMNS = ["user_id", "transaction_id", "event_time", "amount"]


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
              ORDER_COLUMNS, rows)
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


class TransactionsSink:
    """foreachBatch of de-duplicated transactions: sales and order metrics, anomalies, units
    sold, and the alerts they raise, in one PostgreSQL transaction per batch."""

    def __init__(self, query_name: str, postgres: Postgres, writer: TopicWriter | None,
                 notifier: Notifier, stats: BatchStats, watermark: timedelta,
                 critical_score: float) -> None:
        self.query_name, self.postgres, self.writer, self.notifier = (
            query_name, postgres, writer, notifier)
        self.stats, self.watermark, self.critical_score = stats, watermark, critical_score

    @staticmethod
    def frames(transactions: DataFrame) -> dict[str, tuple[DataFrame, Sequence[str]]]:
        """The results a batch of transactions needs, for :func:`collect_many`."""
        return {
            "minute": (sales_metrics(transactions, "1 minute"), SALES_COLUMNS),
            "hourly": (sales_metrics(transactions, "1 hour"), SALES_COLUMNS),
            "orders": (order_metrics(transactions), ORDER_COLUMNS),
            "rules": (rule_anomalies(transactions), ANOMALY_COLUMNS),
            "users": (user_transactions(transactions), USER_TX_COLUMNS),
            "sold": (units_sold(transactions), MOVEMENT_COLUMNS),
        }

    def __call__(self, transactions: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        transactions.persist()
        try:
            found = collect_many(self.frames(transactions))
        finally:
            transactions.unpersist()
        self.write(found, batch_id, started)

    def write(self, found: dict[str, list[dict[str, Any]]], batch_id: int,
              started: float) -> None:
        """Write the collected :meth:`frames` of batch ``batch_id`` (``started``: when its
        Spark work began, for the log)."""
        minute, hourly, orders = found["minute"], found["hourly"], found["orders"]
        rules, users, sold = found["rules"], found["users"], found["sold"]
        if not users:
            self.stats.record(self.query_name, batch_id, 0)
            return
        computed = time.monotonic()
        newest = max(r["event_time"] for r in users)
        prune_before = newest - self.watermark - timedelta(seconds=RAPID_FIRE_WINDOW_SECONDS)
        alerts: list[Alert] = []

        def work(conn: psycopg.Connection) -> None:
            alerts.clear()
            add_sales(conn, "public.sales_metrics", minute)
            add_sales(conn, "public.sales_metrics_hourly", hourly)
            add_orders(conn, orders)
            found = insert_rule_anomalies(conn, rules)
            found += detect_rapid_fire(conn, users, prune_before)
            alerts.extend(anomaly_alerts(found, self.critical_score))
            alerts.extend(apply_stock_movements(conn, sold, self.query_name, batch_id))
            insert_alerts(conn, alerts)
            if self.writer is not None:
                publish_alerts(self.writer, alerts)

        if self.postgres.run_batch(self.query_name, batch_id, work):
            self.notifier.notify(alerts)
        self.stats.record(self.query_name, batch_id,
                          len(minute) + len(hourly) + len(orders) + len(rules) + len(sold))
        log.debug("%s batch %d: %d transactions, Spark %.0f ms, PostgreSQL %.0f ms",
                  self.query_name, batch_id, len(users), (computed - started) * 1000,
                  (time.monotonic() - computed) * 1000)


class InventorySink:
    """foreachBatch of de-duplicated inventory events: restocks and adjustments."""

    def __init__(self, query_name: str, postgres: Postgres, writer: TopicWriter | None,
                 notifier: Notifier, stats: BatchStats) -> None:
        self.query_name, self.postgres, self.writer, self.notifier, self.stats = (
            query_name, postgres, writer, notifier, stats)

    @staticmethod
    def frames(events: DataFrame) -> dict[str, tuple[DataFrame, Sequence[str]]]:
        """The stock movements of a batch of inventory events, for :func:`collect_many`."""
        return {"moves": (stock_movements(events), MOVEMENT_COLUMNS)}

    def __call__(self, events: DataFrame, batch_id: int) -> None:
        self.write(collect_rows(stock_movements(events), MOVEMENT_COLUMNS), batch_id)

    def write(self, moves: list[dict[str, Any]], batch_id: int) -> None:
        """Apply the collected stock movements of batch ``batch_id``."""
        if not moves:
            self.stats.record(self.query_name, batch_id, 0)
            return
        alerts: list[Alert] = []

        def work(conn: psycopg.Connection) -> None:
            alerts.clear()
            alerts.extend(apply_stock_movements(conn, moves, self.query_name, batch_id))
            insert_alerts(conn, alerts)
            if self.writer is not None:
                publish_alerts(self.writer, alerts)

        if self.postgres.run_batch(self.query_name, batch_id, work):
            self.notifier.notify(alerts)
        self.stats.record(self.query_name, batch_id, len(moves))


# --- Sessions ---------------------------------------------------------------------------------

def merge_session_rows(conn: psycopg.Connection, pieces: Sequence[dict]) -> int:
    """Merge a batch's session pieces into ``session_metrics``; return the rows written."""
    if not pieces:
        return 0
    ids = sorted({p["session_id"] for p in pieces})
    cursor = conn.cursor(row_factory=dict_row)
    stored = cursor.execute(
        f"SELECT {', '.join(SESSION_COLUMNS)} FROM public.session_metrics "
        "WHERE session_id = ANY(%s) ORDER BY session_id, session_start FOR UPDATE",
        (ids,)).fetchall()
    upserts, merged_away = merge_sessions(stored, list(pieces))
    if merged_away:
        conn.cursor().executemany(
            "DELETE FROM public.session_metrics WHERE session_id = %s AND session_start = %s",
            merged_away)
    copy_temp(conn, "tmp_sessions",
              "session_id text, user_id text, session_start timestamptz, session_end timestamptz,"
              " duration_seconds float8, page_views int, cart_adds int, cart_removes int,"
              " purchases int, revenue numeric(14,2), converted boolean,"
              " last_cart_add_at timestamptz, purchased_after_last_add boolean,"
              " purchase_times timestamptz[]", SESSION_COLUMNS, upserts)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in SESSION_COLUMNS[1:] if c != "session_start")
    conn.execute(f"""
        INSERT INTO public.session_metrics ({', '.join(SESSION_COLUMNS)}, updated_at)
        SELECT {', '.join(SESSION_COLUMNS)}, now() FROM tmp_sessions
        ORDER BY session_id, session_start
        ON CONFLICT (session_id, session_start) DO UPDATE SET {updates}, updated_at = now()""")
    return len(upserts)


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
    conn.execute("""
        INSERT INTO stream_state.query_progress AS q (query_name, max_event_time, decided_until)
        VALUES (%s, %s, %s)
        ON CONFLICT (query_name) DO UPDATE SET
            max_event_time = greatest(q.max_event_time, EXCLUDED.max_event_time),
            decided_until = coalesce(EXCLUDED.decided_until, q.decided_until)""",
                 (query_name, newest, decided_until))
    return recorded


class SessionsSink:
    """foreachBatch of de-duplicated session activity: session rows merged across batches and
    cart abandonment decided behind the watermark."""

    def __init__(self, query_name: str, postgres: Postgres, stats: BatchStats,
                 watermark: timedelta) -> None:
        self.query_name, self.postgres, self.stats, self.watermark = (
            query_name, postgres, stats, watermark)

    @staticmethod
    def frames(activity: DataFrame) -> dict[str, tuple[DataFrame, Sequence[str]]]:
        """The session pieces of a batch of session activity, for :func:`collect_many`."""
        return {"pieces": (session_metrics(activity), SESSION_COLUMNS)}

    def __call__(self, activity: DataFrame, batch_id: int) -> None:
        self.write(collect_rows(session_metrics(activity), SESSION_COLUMNS), batch_id)

    def write(self, pieces: list[dict[str, Any]], batch_id: int) -> None:
        """Merge the collected session pieces of batch ``batch_id``."""
        if not pieces:
            self.stats.record(self.query_name, batch_id, 0)
            return
        newest = max(p["session_end"] for p in pieces)
        written = [0]

        def work(conn: psycopg.Connection) -> None:
            written[0] = merge_session_rows(conn, pieces)
            written[0] += decide_abandonment(conn, self.query_name, newest, self.watermark)

        self.postgres.run_batch(self.query_name, batch_id, work)
        self.stats.record(self.query_name, batch_id, written[0])


# --- The realtime query ----------------------------------------------------------------------

class RealtimeSink:
    """foreachBatch of the realtime query: valid records of the four input topics, validated
    once and de-duplicated by (topic, event_id), fanned out to the transactions, inventory and
    sessions sinks. Their results are collected in one Spark job; each sink then commits its
    part of the batch in its own PostgreSQL transaction under its own name in
    ``stream_state.batch_commits``, so a replayed batch skips exactly the parts already
    committed. The rows written are recorded under the realtime query's name."""

    def __init__(self, query_name: str, transactions: TransactionsSink, inventory: InventorySink,
                 sessions: SessionsSink, stats: BatchStats) -> None:
        self.query_name, self.stats = query_name, stats
        self.transactions, self.inventory, self.sessions = transactions, inventory, sessions

    def __call__(self, events: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        events.persist()
        try:
            found = collect_many({
                **self.transactions.frames(accepted(events, "transactions")),
                **self.inventory.frames(accepted(events, "inventory_events")),
                **self.sessions.frames(session_activity(events)),
            })
        finally:
            events.unpersist()
        self.transactions.write(found, batch_id, started)
        self.inventory.write(found["moves"], batch_id)
        self.sessions.write(found["pieces"], batch_id)
        written = sum(self.stats.pop(sink.query_name, batch_id) or 0
                      for sink in (self.transactions, self.inventory, self.sessions))
        self.stats.record(self.query_name, batch_id, written)


# --- Raw layer --------------------------------------------------------------------------------

def raw_layer_writer(events: DataFrame, lake: str, topic: str, checkpoint: str):
    """A checkpointed Parquet file sink for ``topic``'s valid events, partitioned by
    ``event_date``: each micro-batch's files are committed exactly once in the sink's log."""
    if not events.isStreaming:
        raise TypeError("raw_layer_writer needs a streaming DataFrame")
    return (events.writeStream.format("parquet").outputMode("append")
            .partitionBy("event_date")
            .option("path", raw_path(lake, topic))
            .option("checkpointLocation", checkpoint))
