"""The operational source tables the generator keeps: ``source.customers``, ``source.products``
and the ground truth ``source.injected_anomalies`` (tables of migration 001).

Only customers and products that appear in an event are written, in batches (COPY into a
temporary table, then one upsert per table), from a background thread so the producer never
waits on PostgreSQL. Rows are idempotent: re-running over the same world inserts nothing twice.

``updated_at`` is when a row's values became true: a customer's signup date, the move's time
for a customer who moved (the warehouse keeps that history), the catalogue's listing date for a
product.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, date, datetime

import psycopg

from generator.catalog import Catalog, customer
from generator.simulate import Records
from globalmart import db

log = logging.getLogger(__name__)

PRODUCTS_LISTED_AT = datetime(2015, 1, 1, tzinfo=UTC)
FLUSH_INTERVAL_S = 1.0
FLUSH_ROWS = 20_000

_CUSTOMER_COLUMNS = ("user_id", "full_name", "email", "country", "city", "signup_date",
                     "loyalty_tier", "updated_at")
_PRODUCT_COLUMNS = ("product_id", "product_name", "category", "brand", "list_price",
                    "initial_stock", "updated_at")
_ANOMALY_COLUMNS = ("transaction_id", "anomaly_type", "user_id", "event_time", "detail")


class SourceTablesMissing(RuntimeError):
    """The source schema is not there: run ``globalmart db upgrade``."""


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _from_us(t_us: int) -> datetime:
    return datetime.fromtimestamp(t_us // 1_000_000, UTC).replace(microsecond=t_us % 1_000_000)


def customer_rows(users: list[int]) -> list[tuple]:
    """``source.customers`` rows of first appearances (as of signup)."""
    rows = []
    for user in users:
        c = customer(user)
        rows.append((c.user_id, c.full_name, c.email, c.country, c.city, c.signup_date,
                     c.loyalty_tier, _midnight(c.signup_date)))
    return rows


def move_rows(moves: list[tuple[int, int, int]]) -> list[tuple]:
    """``source.customers`` rows after moves (the last move of each user wins)."""
    last: dict[int, tuple[int, int]] = {}
    for user, city, t_us in moves:
        last[user] = (city, t_us)
    rows = []
    for user, (city, t_us) in last.items():
        c = customer(user, city)
        rows.append((c.user_id, c.full_name, c.email, c.country, c.city, c.signup_date,
                     c.loyalty_tier, _from_us(t_us)))
    return rows


def product_rows(catalog: Catalog, products: list[int]) -> list[tuple]:
    """``source.products`` rows."""
    rows = []
    for index in products:
        p = catalog.product(index)
        rows.append((p.product_id, p.product_name, p.category, p.brand,
                     f"{p.list_price_cents // 100}.{p.list_price_cents % 100:02d}",
                     p.initial_stock, PRODUCTS_LISTED_AT))
    return rows


def anomaly_rows(anomalies: list[tuple[str, str, str, int, str]]) -> list[tuple]:
    """``source.injected_anomalies`` rows."""
    return [(tx, kind, user, _from_us(t_us), detail)
            for tx, kind, user, t_us, detail in anomalies]


def _upsert(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple],
            conflict: str) -> None:
    if not rows:
        return
    names = ", ".join(columns)
    staging = f"staging_{table.split('.')[-1]}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) "
                 "ON COMMIT DELETE ROWS")
    with conn.cursor() as cur, cur.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} "
                 f"{conflict}")


def write_records(conn: psycopg.Connection, catalog: Catalog, records: Records) -> None:
    """Write one batch of records in one transaction (idempotent)."""
    with conn.transaction():
        _upsert(conn, "source.customers", _CUSTOMER_COLUMNS,
                customer_rows(records.new_customers), "ON CONFLICT (user_id) DO NOTHING")
        _upsert(conn, "source.customers", _CUSTOMER_COLUMNS, move_rows(records.customer_moves),
                "ON CONFLICT (user_id) DO UPDATE SET city = EXCLUDED.city, "
                "updated_at = EXCLUDED.updated_at "
                "WHERE source.customers.updated_at < EXCLUDED.updated_at")
        _upsert(conn, "source.products", _PRODUCT_COLUMNS,
                product_rows(catalog, records.new_products), "ON CONFLICT (product_id) DO NOTHING")
        _upsert(conn, "source.injected_anomalies", _ANOMALY_COLUMNS,
                anomaly_rows(records.anomalies),
                "ON CONFLICT (transaction_id, anomaly_type) DO NOTHING")


def check_tables(url: str) -> None:
    """Fail clearly when the source tables do not exist."""
    with db.connect(url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'source' "
            "AND table_name IN ('customers', 'products', 'injected_anomalies')").fetchone()
    if not found or found[0] != 3:
        raise SourceTablesMissing(
            f"the source tables are missing in {db.redact(url)}: run `globalmart db upgrade`")


class SourceWriter:
    """Writes :class:`Records` batches to PostgreSQL from a background thread.

    ``submit`` never blocks; rows are flushed at least every second. A write error stops the
    writer and is kept in ``error`` (the generator stops on it: the ground truth must be
    complete). ``close`` writes what is left.
    """

    def __init__(self, url: str, catalog: Catalog) -> None:
        self.url = url
        self.catalog = catalog
        self.error: BaseException | None = None
        self.rows_written = 0
        self._queue: queue.Queue[Records | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="source-writer", daemon=True)

    def start(self) -> None:
        """Check the tables and start the writer thread."""
        check_tables(self.url)
        self._thread.start()

    def submit(self, records: Records) -> None:
        """Queue records for writing."""
        if len(records):
            self._queue.put(records)

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or TimeoutError("the source writer did not finish in time")

    def _run(self) -> None:
        try:
            with db.connect(self.url, autocommit=True) as conn:
                self._loop(conn)
        except Exception as exc:  # kept and reported by the generator
            log.error("writing the source tables failed: %s", exc)
            self.error = exc

    def _loop(self, conn: psycopg.Connection) -> None:
        pending = Records()
        last_flush = time.monotonic()
        closing = False
        while not closing:
            wait = max(0.0, FLUSH_INTERVAL_S - (time.monotonic() - last_flush))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = Records()
            if item is None:
                closing = True
            else:
                pending.new_customers += item.new_customers
                pending.customer_moves += item.customer_moves
                pending.new_products += item.new_products
                pending.anomalies += item.anomalies
            due = time.monotonic() - last_flush >= FLUSH_INTERVAL_S
            if len(pending) and (closing or due or len(pending) >= FLUSH_ROWS):
                write_records(conn, self.catalog, pending)
                self.rows_written += len(pending)
                pending = Records()
            if due or closing:
                last_flush = time.monotonic()
