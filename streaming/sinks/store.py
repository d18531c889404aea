"""PostgreSQL for the sinks: a connection per query, the exactly-once batch-commit protocol
(:meth:`Postgres.run_batch`), the vacuum between two batches (:meth:`Postgres.vacuum`), and
rows into temporary tables through ``COPY`` (:func:`copy_temp`, :func:`copy_frame`), from
which the output modules ``INSERT ... ON CONFLICT``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import errors, sql

from globalmart.db import copy_arrow

log = logging.getLogger(__name__)

_RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)

# Tables the realtime query updates or deletes from in every batch.
REWRITTEN_TABLES = ("stream_state.seen_generations", "stream_state.query_progress",
                    "stream_state.raw_buffer", "stream_state.batch_offsets",
                    "stream_state.recent_transactions",
                    "stream_state.inventory_counters", "public.inventory_status",
                    "public.session_metrics", "public.sales_metrics",
                    "public.sales_metrics_hourly", "public.order_metrics")


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


def frame_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """``columns`` of ``frame`` as dicts of Python values (NaT/NaN as None, numbers as int or
    float, timestamps as pandas Timestamps, which are UTC-aware datetimes), ready for
    psycopg."""
    values = [frame[name].astype(object).where(frame[name].notna(), None).tolist()
              for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def create_temp(conn: psycopg.Connection, table: str, columns: str) -> None:
    """Create temporary ``table`` (``columns``: its column definitions), dropped at commit,
    replacing one that an earlier part of the same batch's transaction left."""
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
    conn.execute(f"CREATE TEMP TABLE {table} {columns} ON COMMIT DROP")


def copy_temp(conn: psycopg.Connection, table: str, ddl: str, columns: Sequence[str],
              rows: Iterable[dict[str, Any]]) -> None:
    """Create temporary ``table`` (``ddl`` column definitions, dropped at commit) and COPY
    ``rows`` into it."""
    create_temp(conn, table, f"({ddl})")
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def copy_frame(conn: psycopg.Connection, table: str, ddl: str, frame: pd.DataFrame) -> None:
    """Create temporary ``table`` (``ddl`` column definitions in ``frame``'s column order,
    dropped at commit) and bulk-load ``frame`` with :func:`globalmart.db.copy_arrow` (no Python
    work per row; for the large per-event tables). List values become PostgreSQL array
    literals, decimals text."""
    create_temp(conn, table, f"({ddl})")
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
