"""The micro-batch of the realtime query: its records collected to the driver and validated
(on the executors or on the driver, see ``GLOBALMART_STREAM_VALIDATE_ON``), and
:class:`RealtimeSink`, the query's foreachBatch, which takes one batch through de-duplication
(:mod:`streaming.sinks.state`) and each output module once, in one PostgreSQL transaction
(:meth:`streaming.sinks.store.Postgres.run_batch`). :class:`BatchStats` hands what a batch did
to the pipeline-metrics listener."""

from __future__ import annotations

import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pyarrow as pa
from pyspark.sql import DataFrame

from globalmart.alerts import insert_alerts
from globalmart.contracts import Alert
from globalmart.logs import bound
from streaming.notifier import Notifier
from streaming.sinks.alerts import publish_alerts
from streaming.sinks.anomalies import anomaly_rows, write_anomalies
from streaming.sinks.dead_letters import dead_letters, deliver_dead_letters
from streaming.sinks.ledger import ledger_rows, write_ledger
from streaming.sinks.raw import buffer_raw, raw_rows, record_offsets
from streaming.sinks.sales import window_sales, write_sales
from streaming.sinks.sessions import decide_abandonment, merge_staged_sessions, stage_sessions
from streaming.sinks.state import Accepted, accept_batch
from streaming.sinks.stock import apply_stock_movements, stock_rows
from streaming.sinks.store import Postgres
from streaming.sinks.topics import TopicWriter
from streaming.transforms.parse import (
    KAFKA_COLUMNS,
    check_records,
    frame,
    of_topic,
    reject,
    unship,
    validate_stream,
)
from streaming.transforms.sales import orders, transaction_lines

log = logging.getLogger(__name__)

# What a record's values can make fail while its batch is written: a value a column, Arrow or
# the driver cannot take (PostgreSQL's data errors and size limits, Arrow's and Python's
# conversions), a sum that overflows. Such a failure is isolated to its records.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded, ValueError, OverflowError,
    ArithmeticError, pa.ArrowException)
# Beyond this many records, a batch whose every record fails alone is a fault of the platform.
SYSTEMIC = 20


def collect_validated(batch: DataFrame) -> pa.Table:
    """A micro-batch's records as the executors validated them (see
    :func:`streaming.transforms.parse.validate_stream`), on the driver, in one Spark job with
    no shuffle."""
    return unship(batch.toArrow())


def collect_and_validate(batch: DataFrame) -> pa.Table:
    """A micro-batch's Kafka records collected to the driver (one Spark job, no shuffle) and
    validated there."""
    return check_records(batch.select(*KAFKA_COLUMNS).toArrow())


@dataclass
class BatchResult:
    """What a sink did with one micro-batch: rows written, and per topic the records it read
    and the highest event time of the events it kept."""

    rows: int = 0
    max_event_time: dict[str, datetime] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    rejected: int = 0  # records dead-lettered
    late: int = 0  # events left out of the windows as later than the watermark

    @classmethod
    def total(cls, parts: list[BatchResult]) -> BatchResult:
        """The result of a batch written in ``parts``."""
        result = cls()
        for part in parts:
            result.rows += part.rows
            result.rejected += part.rejected
            result.late += part.late
            for topic, newest in part.max_event_time.items():
                result.max_event_time[topic] = max(newest, result.max_event_time.get(topic,
                                                                                     newest))
            for topic, count in part.records.items():
                result.records[topic] = result.records.get(topic, 0) + count
        return result

    @classmethod
    def of(cls, validated: pd.DataFrame, events: pd.DataFrame) -> BatchResult:
        """The records of a validated batch per topic and the highest event time of its
        accepted ``events`` per topic (no rows written yet)."""
        newest = events.groupby("topic")["event_time"].max()
        return cls(max_event_time={t: v.to_pydatetime() for t, v in newest.items()},
                   records=validated["topic"].value_counts().to_dict())


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


class RealtimeSink:
    """foreachBatch of the realtime query over the four input topics. A batch's records are
    collected and validated once (rejects to the ``dead_letter`` topic and table),
    de-duplicated by (topic, event_id) within the watermark, and turned into sales and order
    metrics, anomalies, stock, alerts, sessions and buffered raw-layer rows, all committed in
    one PostgreSQL transaction."""

    def __init__(self, query_name: str, postgres: Postgres, writer: TopicWriter | None,
                 notifier: Notifier, stats: BatchStats, lateness: timedelta,
                 critical_score: float, lake: str | None = None,
                 late_window: timedelta = timedelta(0),
                 on_executors: bool = False) -> None:
        self.query_name, self.postgres, self.writer, self.notifier = (
            query_name, postgres, writer, notifier)
        self.stats, self.lateness, self.critical_score = stats, lateness, critical_score
        self.late_window = late_window  # how far behind the watermark windows still take events
        self.lake = lake  # where dead letters too large for Kafka are quarantined
        self.on_executors = on_executors  # whether the executors validate (see records())

    def records(self, records: DataFrame) -> DataFrame:
        """The query's input for this sink, from its Kafka ``records``: validated in the Spark
        tasks that read them when the executors validate, else as they are."""
        return validate_stream(records) if self.on_executors else records

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        validated = (collect_validated if self.on_executors else collect_and_validate)(batch)
        log.debug("%s batch %d: %d records validated and collected in %.0f ms", self.query_name,
                  batch_id, validated.num_rows, (time.monotonic() - started) * 1000)
        self.write_batch(validated, batch_id)

    def process(self, records: pa.Table, batch_id: int) -> BatchResult:
        """Validate one batch of Kafka records in this process and write it."""
        return self.write_batch(check_records(records), batch_id)

    def write_batch(self, validated: pa.Table, batch_id: int) -> BatchResult:
        """De-duplicate, compute and commit one batch of validated records. Python's cyclic
        garbage collector is paused meanwhile: the batch's many short-lived objects would
        otherwise trigger full collections over the driver's heap (~10 % of the time); what
        they leave is collected after the batch."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            with bound(query=self.query_name, batch_id=batch_id):
                return self._write_batch(frame(validated), batch_id)
        finally:
            if collecting:
                gc.enable()

    def _write_batch(self, validated: pd.DataFrame, batch_id: int) -> BatchResult:
        started = time.monotonic()
        outcome: list[BatchResult] = []
        alerts: list[Alert] = []

        def work(conn: psycopg.Connection) -> None:
            outcome.clear()
            alerts.clear()
            outcome.extend(self.write_isolating(conn, validated, batch_id, alerts))

        if self.postgres.run_batch(self.query_name, batch_id, work):
            self.notifier.notify(alerts)
        result = BatchResult.total(outcome)
        self.stats.record(self.query_name, batch_id, result)
        log.debug("%s batch %d: %d records (%d rejected); %d rows computed and committed in "
                  "%.0f ms", self.query_name, batch_id, len(validated),
                  validated["reason"].notna().sum(), result.rows,
                  (time.monotonic() - started) * 1000)
        return result

    def write_isolating(self, conn: psycopg.Connection, validated: pd.DataFrame,
                        batch_id: int, alerts: list[Alert]) -> list[BatchResult]:
        """Write a validated batch (in the batch's transaction). When that fails on what some
        records hold (a value a column, Arrow or the driver cannot take, a sum that
        overflows), the batch is split in halves, each written in a savepoint and split again
        where it fails, until the records that fail alone are found; they go to the dead letter
        with the error, and everything else is written. No record can stop the query. (If every
        record of a batch of more than ``SYSTEMIC`` fails alone, the fault is not in the data:
        the error is raised.)"""
        results: list[BatchResult] = []
        offenders: dict[int, str] = {}

        def attempt(part: pd.DataFrame) -> None:
            try:
                with conn.transaction():  # a savepoint: a failed part leaves no trace
                    results.append(self.write(conn, part, batch_id, len(results), alerts))
            except RECORD_ERRORS as exc:
                if len(part) == 1:
                    offenders[int(part.index[0])] = f"cannot be stored: {type(exc).__name__}: {exc}"
                    return
                log.warning("%s batch %d: writing %d records failed (%s); splitting them to "
                            "find the records at fault", self.query_name, batch_id, len(part),
                            exc)
                middle = len(part) // 2
                attempt(part.iloc[:middle])
                attempt(part.iloc[middle:])

        attempt(validated)
        if offenders:
            if len(offenders) == len(validated) > SYSTEMIC:
                raise RuntimeError(f"every record of batch {batch_id} failed to be written; "
                                   f"first error: {next(iter(offenders.values()))}")
            log.warning("%s batch %d: %d records cannot be stored; dead-lettered",
                        self.query_name, batch_id, len(offenders))
            results.append(self.write(conn, reject(validated, offenders), batch_id,
                                      len(results), alerts))
        return results

    def write(self, conn: psycopg.Connection, validated: pd.DataFrame, batch_id: int,
              part: int, alerts: list[Alert]) -> BatchResult:
        """Write (part of) a validated batch: accept its events, record its offsets and its
        day ledger, deliver its dead letters (conflicting duplicates among them), write what
        its events change and publish the alerts raised."""
        accepted = accept_batch(conn, self.query_name, validated, self.lateness,
                                self.late_window)
        result = BatchResult.of(validated, accepted.events)
        result.late = len(accepted.left_out)
        record_offsets(conn, self.query_name, batch_id, validated)
        write_ledger(conn, ledger_rows(pd.concat([accepted.events, accepted.admitted]),
                                       accepted.left_out))
        letters = dead_letters(pd.concat([validated, reject(validated, accepted.conflicts)]),
                               datetime.now(UTC))
        result.rejected = len(letters)
        delivered = deliver_dead_letters(conn, self.writer, letters, self.lake)
        raised: list[Alert] = []
        result.rows = delivered + self.write_events(conn, accepted, batch_id, part, raised)
        if self.writer is not None:
            publish_alerts(self.writer, raised)
        alerts.extend(raised)
        return result

    def write_events(self, conn: psycopg.Connection, accepted: Accepted, batch_id: int,
                     part: int, alerts: list[Alert]) -> int:
        """Write what the accepted events change, buffer them and the late ones for the raw
        layer, append the alerts raised, and return the rows written. Stock counts every late
        event too: it is no window; the sales windows count the late events admitted. The
        sessions are merged (in PostgreSQL, on a second thread) while the other figures and
        the raw-layer rows are computed."""
        events = accepted.events
        raw = pd.concat([events, accepted.admitted, accepted.left_out])
        moves = stock_rows(transaction_lines(of_topic(raw, "transactions")),
                           of_topic(raw, "inventory_events"))
        written = len(moves)
        if events.empty:
            buffered = raw_rows(raw, batch_id, part)
            written += write_sales(conn, window_sales(accepted.admitted))
        else:
            newest = events["event_time"].max().to_pydatetime()
            forget = newest - self.lateness  # no later event of the query is older
            stage_sessions(conn, events)
            with ThreadPoolExecutor(max_workers=1) as pool:
                merging = pool.submit(merge_staged_sessions, conn, forget)
                suspects = anomaly_rows(orders(of_topic(events, "transactions")))
                sales = window_sales(pd.concat([events, accepted.admitted]))
                buffered = raw_rows(raw, batch_id, part)
                written += merging.result()
            written += write_sales(conn, sales) + len(suspects.rules)
            alerts.extend(write_anomalies(conn, suspects, forget, self.critical_score))
        alerts.extend(apply_stock_movements(conn, moves, self.query_name, batch_id))
        insert_alerts(conn, alerts)
        if not events.empty:
            written += decide_abandonment(conn, self.query_name, newest, self.lateness)
        return written + buffer_raw(conn, buffered)
