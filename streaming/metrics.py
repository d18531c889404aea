"""Pipeline metrics: one ``public.pipeline_metrics`` row per query, micro-batch and topic,
from Spark's query progress events, with the lag measured against the log ends the source saw
when it planned the batch (its ``latestOffset``, as Spark's own Kafka source reports it): the
records the batch left for later.

``max_event_time`` is the highest event time of the events the batch kept for the topic (the
sinks report it); the Dagster sensor reads it from the raw-layer query to know when a day is
complete.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql.streaming import StreamingQueryListener

if TYPE_CHECKING:
    from streaming.exporter import StreamMetrics
    from streaming.sinks.batch import BatchResult

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["query_name", "batch_id", "topic", "processed_at", "input_rows",
                  "input_rows_per_second", "processed_rows_per_second", "batch_duration_ms",
                  "lag_records", "rows_written", "max_event_time"]



def _offsets(value: Any) -> dict[tuple[str, int], int]:
    """A source offset ({"topic": {"partition": offset}} as JSON text or dict) as a map."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    if not isinstance(value, dict):
        return {}
    found = {}
    for topic, parts in value.items():
        if isinstance(parts, dict):
            for partition, offset in parts.items():
                found[(topic, int(partition))] = int(offset)
    return found


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _split(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split over ``weights`` proportionally, summing exactly to ``total``."""
    whole = sum(weights.values())
    if not weights:
        return {}
    if whole == 0:
        shares = dict.fromkeys(weights, 0)
        shares[sorted(weights)[0]] = total
        return shares
    shares = {k: total * w // whole for k, w in weights.items()}
    shares[max(weights, key=lambda k: (weights[k], k))] += total - sum(shares.values())
    return shares


def progress_rows(progress: Mapping[str, Any], result: BatchResult | None
                  ) -> list[dict[str, Any]]:
    """The ``pipeline_metrics`` rows of one query progress report (Spark's progress JSON as a
    dict): one per topic the query read, with input rows from the offset ranges, lag against
    the log ends the source saw when it planned the batch (``latestOffset``), rates and the rows
    the sink wrote (``result``) split over the topics in proportion to their input rows, and the
    sink's highest event time per topic. Input rows per topic are the sink's record counts, or
    else the offset ranges."""
    sources = progress.get("sources") or []
    start: dict[tuple[str, int], int] = {}
    end: dict[tuple[str, int], int] = {}
    planned_ends: dict[tuple[str, int], int] = {}  # the log ends seen when planning
    for source in sources:
        start.update(_offsets(source.get("startOffset")))
        end.update(_offsets(source.get("endOffset")))
        planned_ends.update(_offsets(source.get("latestOffset")))
    topics = sorted({t for t, _ in end}) or ["*"]
    total_rows = int(progress.get("numInputRows") or 0)
    if result is not None and result.records:
        per_topic = {t: int(result.records.get(t, 0)) for t in topics}
    else:
        per_topic = {t: sum(max(0, o - start.get((tt, p), o)) for (tt, p), o in end.items()
                            if tt == t) for t in topics}
        if not start and total_rows:
            per_topic = _split(total_rows, dict.fromkeys(topics, 1))
    written_split = _split(result.rows if result else 0, per_topic)
    event_times = result.max_event_time if result else {}
    duration = int((progress.get("durationMs") or {}).get("triggerExecution", 0))
    processed_at = _time(progress.get("timestamp")) or datetime.now(UTC)
    rows = []
    for topic in topics:
        share = per_topic[topic] / total_rows if total_rows else 0.0
        lag = sum(max(0, planned_ends[key] - offset) for key, offset in end.items()
                  if key[0] == topic and key in planned_ends)
        rows.append({
            "query_name": progress.get("name") or progress.get("id"),
            "batch_id": int(progress["batchId"]),
            "topic": topic,
            "processed_at": processed_at,
            "input_rows": per_topic[topic],
            "input_rows_per_second": float(progress.get("inputRowsPerSecond") or 0.0) * share,
            "processed_rows_per_second":
                float(progress.get("processedRowsPerSecond") or 0.0) * share,
            "batch_duration_ms": duration,
            "lag_records": lag,
            "rows_written": written_split.get(topic, 0),
            "max_event_time": event_times.get(topic),
        })
    return rows


@dataclass
class QuerySnapshot:
    """The latest figures of one query, for the progress line and the caught-up check."""

    batch_id: int
    input_rows: int
    processed_rows_per_second: float
    lag_records: int
    max_event_time: datetime | None


class PipelineMetricsListener(StreamingQueryListener):
    """Writes a ``pipeline_metrics`` row per query, batch and topic on every progress event
    and keeps the latest snapshot per query."""

    def __init__(self, db_url: str,
                 batch_result: Callable[[str, int], BatchResult | None],
                 exporter: StreamMetrics | None = None) -> None:
        self.db_url = db_url
        self._batch_result = batch_result
        self._exporter = exporter
        self._conn: Any = None
        self._lock = threading.Lock()
        self.snapshots: dict[str, QuerySnapshot] = {}

    def onQueryStarted(self, event) -> None:  # noqa: N802 - Spark's listener API
        """Nothing to record when a query starts."""

    def onQueryIdle(self, event) -> None:  # noqa: N802
        """Nothing to record while a query waits for data."""

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        """Log a query that ended with an error."""
        if event.exception:
            log.error("query %s terminated: %s", event.id, event.exception)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        """Record the batch's rows (never raises: metrics must not stop the stream)."""
        try:
            self.record(json.loads(event.progress.json))
        except Exception:  # noqa: BLE001 - a metrics failure is logged, the stream goes on
            log.exception("could not record pipeline metrics")

    def record(self, progress: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Compute and store the rows of one progress report; return them."""
        with self._lock:
            name = str(progress.get("name") or progress.get("id"))
            result = self._batch_result(name, int(progress["batchId"]))
            rows = progress_rows(progress, result)
            log.debug("%s batch %s: Spark's durations (ms): %s", name, progress["batchId"],
                      ", ".join(f"{step} {ms}" for step, ms
                                in sorted((progress.get("durationMs") or {}).items())))
            self._write(rows)
            if self._exporter is not None:
                self._exporter.observe(name, rows, result.rejected if result else 0,
                                       result.late if result else 0)
            self.snapshots[name] = QuerySnapshot(
                batch_id=int(progress["batchId"]),
                input_rows=sum(r["input_rows"] for r in rows),
                processed_rows_per_second=float(progress.get("processedRowsPerSecond") or 0),
                lag_records=sum(r["lag_records"] for r in rows),
                max_event_time=max((r["max_event_time"] for r in rows
                                    if r["max_event_time"] is not None), default=None),
            )
            return rows

    def wait_recorded(self, last_batches: Mapping[str, int], timeout: float = 10.0) -> bool:
        """Wait (up to ``timeout`` seconds) until the progress of each query's batch in
        ``last_batches`` has been recorded: Spark delivers progress events asynchronously, so
        the last ones can arrive after the queries stopped. Returns whether they all did."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = all(name in self.snapshots and self.snapshots[name].batch_id >= batch
                           for name, batch in last_batches.items())
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.05)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        from globalmart.db import connect

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.db_url, autocommit=True)
        write_metrics(self._conn, rows)

    def close(self) -> None:
        """Release the database connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def write_metrics(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Upsert ``pipeline_metrics`` rows (by query, batch and topic) on a psycopg connection."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in METRIC_COLUMNS[3:])
    conn.cursor().executemany(
        f"INSERT INTO public.pipeline_metrics ({', '.join(METRIC_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(METRIC_COLUMNS))}) "
        f"ON CONFLICT (query_name, batch_id, topic) DO UPDATE SET {updates}",
        [[row[c] for c in METRIC_COLUMNS] for row in rows])
