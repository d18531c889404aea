"""The raw layer: a batch's accepted and late events are buffered in
``stream_state.raw_buffer`` in the batch's transaction (one Arrow blob per topic and event
date, :func:`raw_rows`, :func:`buffer_raw`), with the Kafka offsets the batch read up to
(:func:`record_offsets`); :class:`RawLayer` flushes the buffer to Parquet files named by the
range of batches they hold, deletes what it wrote from the buffer and advances the raw layer's
Kafka progress (``public.raw_progress``, the Dagster sensor's completeness fence) in its own
transaction."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pa_fs

from globalmart.contracts import INPUT_TOPICS
from globalmart.lake import filesystem
from globalmart.raw_layer import day_directory, file_name, first_batch, raw_path
from globalmart.vocabulary import RAW_QUERY
from streaming.metrics import write_metrics
from streaming.sinks.store import Postgres
from streaming.transforms.parse import accepted


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def raw_rows(events: pd.DataFrame, batch_id: int, part: int = 0) -> list[tuple]:
    """The accepted ``events`` of batch ``batch_id`` (its ``part``-th part when it is written
    in parts) as rows of ``stream_state.raw_buffer``: one Arrow blob per topic and event
    date."""
    rows = []
    for topic in INPUT_TOPICS:
        table = accepted(events, topic)
        for day in sorted(table["event_date"].unique().to_pylist()):
            chunk = table.filter(pc.equal(table["event_date"], day)).drop_columns("event_date")
            rows.append((batch_id, part, topic, day, chunk.num_rows,
                         pc.max(chunk["event_time"]).as_py(), _ipc(chunk)))
    return rows


def record_offsets(conn: psycopg.Connection, query_name: str, batch_id: int,
                   validated: pd.DataFrame) -> None:
    """Record, in the batch's transaction, the next offset of every input partition the batch
    read records of (valid or not: every record below it is accounted for)."""
    if validated.empty:
        return
    ends = validated.groupby(["topic", "kafka_partition"])["kafka_offset"].max() + 1
    conn.cursor().executemany(
        "INSERT INTO stream_state.batch_offsets AS b (query_name, batch_id, topic, "
        "kafka_partition, next_offset) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (query_name, batch_id, topic, kafka_partition) DO UPDATE SET "
        "next_offset = greatest(b.next_offset, EXCLUDED.next_offset)",
        [(query_name, batch_id, topic, int(partition), int(end))
         for (topic, partition), end in ends.items()])


def buffer_raw(conn: psycopg.Connection, rows: Sequence[tuple]) -> int:
    """Add :func:`raw_rows` to ``stream_state.raw_buffer``, in the batch's transaction;
    :class:`RawLayer` turns them into Parquet. Returns the events buffered."""
    if rows:
        conn.cursor().executemany(
            "INSERT INTO stream_state.raw_buffer (batch_id, part, topic, event_date, row_count, "
            "max_event_time, data) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    return sum(row[4] for row in rows)


def write_raw_file(lake: str, topic: str, day: date, first: int, last: int,
                   table: pa.Table) -> str:
    """Write one raw-layer file, ``<lake>/raw/<topic>/event_date=<day>/part-<first>-<last>
    .parquet``, under a hidden name renamed into place (readers never see a partial file).
    Files of the directory that start at or after ``first`` are left from a flush that did not
    commit (their rows are still buffered, so they are in ``table`` too) and are removed."""
    fs, root = filesystem(raw_path(lake, topic))
    directory = day_directory(root, day)
    fs.create_dir(directory, recursive=True)
    for info in fs.get_file_info(pa_fs.FileSelector(directory)):
        start = first_batch(info.base_name)
        if start is not None and start >= first:
            fs.delete_file(info.path)
    name = file_name(first, last)
    pq.write_table(table, f"{directory}/.{name}.tmp", filesystem=fs)
    fs.move(f"{directory}/.{name}.tmp", f"{directory}/{name}")
    return f"{directory}/{name}"


def advance_raw_progress(conn: psycopg.Connection, through: int) -> None:
    """Fold the offsets of the batches up to ``through`` (their events are in the raw layer
    once the flush commits) into ``public.raw_progress``."""
    conn.execute("""
        INSERT INTO public.raw_progress AS p (topic, kafka_partition, next_offset)
        SELECT topic, kafka_partition, max(next_offset) FROM stream_state.batch_offsets
        WHERE batch_id <= %s GROUP BY topic, kafka_partition ORDER BY 1, 2
        ON CONFLICT (topic, kafka_partition) DO UPDATE SET
            next_offset = greatest(p.next_offset, EXCLUDED.next_offset), updated_at = now()
        """, (through,))
    conn.execute("DELETE FROM stream_state.batch_offsets WHERE batch_id <= %s", (through,))


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
            # The batches committed so far; a batch's buffered rows and offsets commit together.
            through = conn.execute(
                "SELECT max(batch_id) FROM stream_state.batch_offsets").fetchone()[0]  # type: ignore[index]
            buffered = conn.execute(
                "SELECT batch_id, topic, event_date, row_count, max_event_time, data "
                "FROM stream_state.raw_buffer WHERE %s::bigint IS NULL OR batch_id <= %s "
                "ORDER BY batch_id, part, topic, event_date FOR UPDATE",
                (through, through)).fetchall()
            if through is not None:
                advance_raw_progress(conn, through)
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
