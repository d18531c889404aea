"""The streaming application: wiring of the Kafka source, the realtime query and the raw layer.

One query, ``realtime``, reads the four input topics every ``trigger_interval`` (checkpoint
under ``<checkpoints>/realtime``). Each micro-batch is one Spark job: the Kafka source's
partitions are read in parallel, validated (on the executors with ``mapInArrow`` or on the
driver, ``GLOBALMART_STREAM_VALIDATE_ON``) and collected to the driver as one typed Arrow
table, where the batch is de-duplicated against ``stream_state.seen_events`` and
aggregated with pandas (``streaming.transforms``); dead letters, sales and order metrics,
anomalies, stock, alerts, sessions and the batch's raw-layer rows (buffered in
``stream_state.raw_buffer``) are committed in one PostgreSQL transaction. No shuffle and no
Spark state store runs per batch: at this product's event rates the fixed cost of Spark
stages, not the data, dominated.

Every ``raw_flush_interval``, and when the application stops, :class:`streaming.sinks.raw.RawLayer`
writes the buffered rows to the Parquet raw layer (one file per topic and day), so the lake
gets few, large files while the real-time tables stay fresh. Every ``vacuum_interval`` the
tables the realtime query rewrites are vacuumed (autovacuum may be off, or too slow for tables
rewritten every second), and analysed at every ``ANALYZE_EVERY``-th vacuum, always between
two batches of the realtime query (see :meth:`streaming.sinks.store.Postgres.vacuum`).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from globalmart.contracts import ALL_TOPICS, INPUT_TOPICS, contract_environment
from globalmart.lake import local_path, spark_url
from globalmart.raw_layer import FILE_GLOB, raw_path
from globalmart.settings import PlatformSettings
from globalmart.vocabulary import REALTIME_QUERY
from streaming.config import StreamingSettings
from streaming.exporter import StreamMetrics
from streaming.metrics import PipelineMetricsListener, QuerySnapshot
from streaming.notifier import build_notifier
from streaming.sinks.batch import BatchStats, RealtimeSink
from streaming.sinks.raw import RawLayer
from streaming.sinks.store import Postgres
from streaming.sinks.topics import TopicWriter

log = logging.getLogger(__name__)

# Python workers of a busy machine can take longer than the default 15 s to connect back.
SPARK_CONF = {"spark.python.authenticate.socketTimeout": "120s"}
KAFKA_FETCH_MAX_WAIT_MS = 10
ANALYZE_EVERY = 6
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_duration(text: str) -> timedelta:
    """'10 minutes' / '1 second' / '2 hours' as a timedelta (the form Spark accepts)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?\s*", text.lower())
    if not match:
        raise ValueError(f"not a duration like '10 minutes': {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class Wiring:
    """What the queries share: settings, endpoints and sink resources."""

    spark: SparkSession
    settings: StreamingSettings
    platform: PlatformSettings
    stats: BatchStats
    writer: TopicWriter
    postgres: Postgres  # the realtime query's store, which also vacuums its tables

    @property
    def checkpoints(self) -> str:
        """The checkpoint root."""
        return self.settings.checkpoints(self.platform.lake)


def read_topics(spark: SparkSession, settings: StreamingSettings, bootstrap_servers: str,
                topics: tuple[str, ...] | list[str]) -> DataFrame:
    """A stream of Kafka records (Spark's own ``kafka`` source, offsets in the query's
    checkpoint) from ``topics``, read by ``read_tasks`` Spark tasks (the source makes one per
    Kafka partition; they are coalesced, without a shuffle)."""
    records = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", settings.starting_offsets)
        .option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
        # a consumer's fetch otherwise waits up to 500 ms for data past the batch's end; with
        # one task reading several partitions that wait came once per partition (measured:
        # the collect of ~1,000 records took 1.0–1.3 s, 0.3–0.6 s with this)
        .option("kafka.fetch.max.wait.ms", str(KAFKA_FETCH_MAX_WAIT_MS))
        .load()
    )
    return records.coalesce(settings.read_tasks) if settings.read_tasks else records


class CheckpointError(RuntimeError):
    """A query's checkpoint and what it already wrote do not belong together."""


def _started(checkpoint: str) -> bool:
    """Whether ``checkpoint`` holds a query's offsets (True where it cannot be checked)."""
    directory = local_path(checkpoint)
    return directory is None or (directory / "offsets").is_dir()


def check_checkpoint(db_url: str, lake: str, query_name: str, checkpoint: str) -> None:
    """Refuse to start ``query_name`` from scratch when it committed batches before (its rows in
    ``stream_state.batch_commits``, or raw-layer files) but its checkpoint is gone: the new
    query's first batch ids would be taken for ones already written and skipped or overwritten.
    Also refuse a raw layer with an earlier version's Spark file-sink log. (Checked on local
    paths; elsewhere keep checkpoints, lake and database together.)"""
    from globalmart.db import connect

    for topic in INPUT_TOPICS:
        root = local_path(raw_path(lake, topic))
        if root is not None and (root / "_spark_metadata").is_dir():
            raise CheckpointError(
                f"the raw layer {raw_path(lake, topic)} holds a Spark file-sink log "
                "(_spark_metadata) from an earlier version of the stream; Spark would read only "
                "the files listed there. Move that _spark_metadata directory away (the Parquet "
                "files stay valid)")
    if _started(checkpoint):
        return
    with connect(db_url) as conn:
        last = conn.execute("SELECT max(batch_id) FROM stream_state.batch_commits "
                            "WHERE query_name = %s", (query_name,)).fetchone()[0]  # type: ignore[index]
    remedy = ("restore the checkpoint, or start over: DELETE FROM stream_state.batch_commits "
              f"and query_progress WHERE query_name = '{query_name}', and TRUNCATE "
              "stream_state.seen_events")
    if last is not None:
        raise CheckpointError(
            f"query {query_name} committed batches up to {last} in PostgreSQL but its "
            f"checkpoint {checkpoint} is gone; {remedy}")
    for topic in INPUT_TOPICS:
        root = local_path(raw_path(lake, topic))
        if root is not None and any(root.glob(FILE_GLOB)):
            raise CheckpointError(
                f"the raw layer {raw_path(lake, topic)} was written by a query whose "
                f"checkpoint {checkpoint} is gone; restore the checkpoint, or move that raw "
                "layer away to rebuild it from Kafka")


def define_queries(w: Wiring) -> dict[str, Callable[[], DataStreamWriter]]:
    """Every query of the application, by name, as a function building its writer."""
    s, bootstrap = w.settings, w.platform.bootstrap_servers
    sink = RealtimeSink(REALTIME_QUERY, w.postgres, w.writer,
                        build_notifier(s.alert_webhook_url), w.stats, parse_duration(s.watermark),
                        s.critical_anomaly_score, lake=w.platform.lake,
                        late_window=parse_duration(s.late_window),
                        on_executors=s.validates_on_executors())

    def build() -> DataStreamWriter:
        checkpoint = f"{w.checkpoints}/{REALTIME_QUERY}"
        check_checkpoint(w.platform.db_url, w.platform.lake, REALTIME_QUERY, checkpoint)
        records = read_topics(w.spark, s, bootstrap, tuple(INPUT_TOPICS))
        return (sink.records(records).writeStream.queryName(REALTIME_QUERY).outputMode("append")
                .foreachBatch(sink).option("checkpointLocation", spark_url(checkpoint)))

    return {REALTIME_QUERY: build}


def start_query(w: Wiring, build: Callable[[], DataStreamWriter],
                available_now: bool) -> StreamingQuery:
    """Start a query every ``trigger_interval`` (or once over what is available now)."""
    writer = build()
    if available_now:
        return writer.trigger(availableNow=True).start()
    return writer.trigger(processingTime=w.settings.trigger_interval).start()


def upkeep(what: str, work: Callable[[], object], echo: Callable[[str], None]) -> bool:
    """Run a periodic upkeep step (the raw-layer flush, the vacuum); a failure is reported and
    left for the next time (a flush's rows stay buffered). Returns whether it succeeded."""
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - the stream goes on; the next run catches up
        echo(f"stream: {what} failed, retrying at the next one: {exc}")
        return False
    return True


def progress_line(snapshots: dict[str, QuerySnapshot]) -> str:
    """One short line: per query the last batch, its rate and lag."""
    if not snapshots:
        return "stream: waiting for the first batches"
    parts = [f"{name}#{snap.batch_id} {snap.processed_rows_per_second:,.0f}/s "
             f"lag {snap.lag_records}" for name, snap in sorted(snapshots.items())]
    return "stream: " + " | ".join(parts)


def serve(spark: SparkSession, settings: StreamingSettings, platform: PlatformSettings,
          stop: threading.Event, available_now: bool = False,
          echo: Callable[[str], None] = log.info) -> int:
    """Run every query on ``spark`` until ``stop`` is set (or, with ``available_now``, until
    each has processed what its topics held when it started), then stop them. A failed query
    is restarted from its checkpoint (its sinks are idempotent) up to ``max_query_restarts``
    times. Returns the exit status: 0, or 1 when a query kept failing."""
    from globalmart.kafka import ensure_topics

    ensure_topics(platform.bootstrap_servers, ALL_TOPICS)
    stats = BatchStats()
    exporter = None
    if settings.metrics_port:
        exporter = StreamMetrics()
        exporter.serve(settings.metrics_port)
    listener = PipelineMetricsListener(platform.db_url, stats.pop, exporter)
    spark.streams.addListener(listener)
    wiring = Wiring(spark, settings, platform, stats, TopicWriter(platform.bootstrap_servers),
                    Postgres(platform.db_url))
    raw = RawLayer(platform.db_url, platform.lake)
    builders = define_queries(wiring)
    running: dict[str, StreamingQuery] = {}
    restarts: dict[str, int] = dict.fromkeys(builders, 0)
    status = 0
    try:
        for name, build in builders.items():
            running[name] = start_query(wiring, build, available_now)
        echo(f"stream: {len(running)} queries running, checkpoints under {wiring.checkpoints}")
        next_line = time.monotonic() + settings.progress_interval_seconds
        flush_every = parse_duration(settings.raw_flush_interval).total_seconds()
        next_flush = time.monotonic() + flush_every
        vacuum_every = parse_duration(settings.vacuum_interval).total_seconds()
        next_vacuum = time.monotonic() + vacuum_every
        vacuums = 0
        while not stop.is_set():
            for name, query in list(running.items()):
                if query.isActive or query.exception() is None:
                    continue
                restarts[name] += 1
                if restarts[name] > settings.max_query_restarts:
                    echo(f"stream: query {name} failed {restarts[name]} times, giving up: "
                         f"{query.exception()}")
                    status = 1
                    stop.set()
                    break
                echo(f"stream: query {name} failed, restarting it from its checkpoint "
                     f"({restarts[name]}/{settings.max_query_restarts}): {query.exception()}")
                running[name] = start_query(wiring, builders[name], available_now)
            if stop.is_set():
                break
            if available_now and not any(q.isActive for q in running.values()):
                echo("stream: caught up")
                break
            if time.monotonic() >= next_flush:
                upkeep("raw-layer flush", raw.flush, echo)
                next_flush = time.monotonic() + flush_every
            if vacuum_every and time.monotonic() >= next_vacuum:
                analyze = vacuums % ANALYZE_EVERY == 0
                upkeep("vacuum", partial(wiring.postgres.vacuum, analyze), echo)
                vacuums += 1
                next_vacuum = time.monotonic() + vacuum_every
            if time.monotonic() >= next_line:
                echo(progress_line(listener.snapshots))
                next_line += settings.progress_interval_seconds
            stop.wait(0.2)
    finally:
        for query in running.values():
            try:
                query.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                log.warning("stopping %s: %s", query.name, exc)
        listener.wait_recorded({name: query.lastProgress["batchId"]
                                for name, query in running.items() if query.lastProgress})
        spark.streams.removeListener(listener)
        listener.close()
        wiring.writer.close()
        if not upkeep("raw-layer flush", raw.flush, echo):
            status = 1
        raw.close()
    echo(f"stream: stopped (status {status})")
    return status


def run(settings: StreamingSettings, platform: PlatformSettings, available_now: bool = False,
        echo: Callable[[str], None] = log.info) -> int:
    """The ``globalmart stream`` process: migrate the schema, build the Spark session, serve
    until SIGINT/SIGTERM (or until caught up with ``available_now``), stop cleanly."""
    from globalmart import db
    from globalmart.spark import build_spark_session

    db.upgrade(platform.db_url)
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        echo(f"stream: {signal.Signals(signum).name} received, stopping the queries")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    executors = {f"spark.executorEnv.{name}": value  # they validate against the contracts
                 for name, value in contract_environment().items()}
    spark = build_spark_session("globalmart-stream", settings.master,
                                extra_conf={**SPARK_CONF, **executors})
    try:
        return serve(spark, settings, platform, stop, available_now, echo)
    finally:
        spark.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
