"""The streaming application: wiring of the Kafka source, the transforms and the sinks.

Queries (each with its checkpoint under ``<checkpoints>/<name>``):

==================  ==========================================  ===============================
query               reads                                       writes
==================  ==========================================  ===============================
realtime            the four input topics (validated once,      sales/order metrics, anomalies,
                    de-duplicated by topic and event id)        stock, alerts, session_metrics,
                                                                cart_abandonment
raw_<topic>         one input topic (valid, de-duplicated)      Parquet raw layer (file sink)
dead_letter         the four input topics                       dead_letter topic and table
==================  ==========================================  ===============================

The realtime query runs every ``trigger_interval``; its foreachBatch fans each batch out to the
transactions, inventory and sessions sinks (each commits under its own name in
``stream_state.batch_commits``). The raw-layer and dead-letter queries run every
``raw_trigger_interval`` in their own scheduler pool, so their larger, rarer batches share the
cores fairly with the realtime query instead of queueing ahead of it.
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
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from globalmart.contracts import ALL_TOPICS, INPUT_TOPICS
from globalmart.settings import PlatformSettings
from streaming.config import StreamingSettings
from streaming.metrics import PipelineMetricsListener, QuerySnapshot
from streaming.notifier import build_notifier
from streaming.schemas import raw_path
from streaming.sinks import (
    BatchStats,
    DeadLetterSink,
    InventorySink,
    Postgres,
    RealtimeSink,
    SessionsSink,
    TopicWriter,
    TransactionsSink,
    raw_layer_writer,
)
from streaming.transforms.dedup import deduplicate, deduplicate_valid
from streaming.transforms.parse import accepted, validate

log = logging.getLogger(__name__)

# Python workers of a busy machine can take longer than the default 15 s to connect back.
# FAIR scheduling shares the cores between the realtime query's pool and the others'.
SPARK_CONF = {"spark.python.authenticate.socketTimeout": "120s",
              "spark.scheduler.mode": "FAIR"}
REALTIME_QUERY = "realtime"
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

    @property
    def checkpoints(self) -> str:
        """The checkpoint root."""
        return self.settings.checkpoints(self.platform.lake)


def read_topics(spark: SparkSession, settings: StreamingSettings, bootstrap_servers: str,
                topics: tuple[str, ...] | list[str]) -> DataFrame:
    """A stream of Kafka records (native Kafka columns) from ``topics``."""
    reader = (
        spark.readStream.format(settings.source_format)
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", settings.starting_offsets)
        .option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    )
    if settings.source_format == "kafka":
        reader = reader.option("failOnDataLoss", "false")
    elif settings.max_input_partitions is not None:
        reader = reader.option("maxInputPartitions", str(settings.max_input_partitions))
    return reader.load()


class RawLayerError(RuntimeError):
    """The raw layer and its query's checkpoint do not belong together."""


def _local(path: str) -> Path | None:
    if path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    return None if "://" in path else Path(path)


def check_raw_layer(lake: str, topic: str, checkpoint: str) -> None:
    """Refuse to start a raw-layer query whose file-sink log exists without its checkpoint: the
    sink would take the new query's first batches for ones it already wrote and skip them.
    (Checked on local paths; elsewhere keep checkpoints and the lake together.)"""
    log_dir = _local(f"{raw_path(lake, topic)}/_spark_metadata")
    checkpoint_dir = _local(checkpoint)
    if (log_dir and checkpoint_dir and log_dir.is_dir()
            and not (checkpoint_dir / "offsets").is_dir()):
        raise RawLayerError(
            f"the raw layer {raw_path(lake, topic)} was written by a query whose checkpoint "
            f"{checkpoint} is gone; restore the checkpoint, or move that raw layer away to "
            "rebuild it from Kafka")


def define_queries(w: Wiring) -> dict[str, Callable[[], DataStreamWriter]]:
    """Every query of the application, by name, as a function building its writer."""
    s, bootstrap = w.settings, w.platform.bootstrap_servers
    watermark = parse_duration(s.watermark)
    notifier = build_notifier(s.alert_webhook_url)

    def source(topics) -> DataFrame:
        return validate(read_topics(w.spark, s, bootstrap, tuple(topics)))

    def checkpoint(name: str) -> str:
        return f"{w.checkpoints}/{name}"

    def foreach(name: str, frame: DataFrame, sink) -> DataStreamWriter:
        return (frame.writeStream.queryName(name).outputMode("append").foreachBatch(sink)
                .option("checkpointLocation", checkpoint(name)))

    def dead_letter() -> DataStreamWriter:
        sink = DeadLetterSink("dead_letter", Postgres(w.platform.db_url), w.writer, w.stats)
        return foreach("dead_letter", source(INPUT_TOPICS), sink)

    def raw(topic: str) -> Callable[[], DataStreamWriter]:
        def build() -> DataStreamWriter:
            check_raw_layer(w.platform.lake, topic, checkpoint(f"raw_{topic}"))
            events = deduplicate(accepted(source([topic]), topic), s.watermark)
            return raw_layer_writer(events, w.platform.lake, topic,
                                    checkpoint(f"raw_{topic}")).queryName(f"raw_{topic}")
        return build

    def realtime() -> DataStreamWriter:
        events = deduplicate_valid(source(INPUT_TOPICS), s.watermark)
        sink = RealtimeSink(
            REALTIME_QUERY,
            TransactionsSink("transactions", Postgres(w.platform.db_url), w.writer, notifier,
                             w.stats, watermark, s.critical_anomaly_score),
            InventorySink("inventory", Postgres(w.platform.db_url), w.writer, notifier,
                          w.stats),
            SessionsSink("sessions", Postgres(w.platform.db_url), w.stats, watermark),
            w.stats)
        return foreach(REALTIME_QUERY, events, sink)

    queries: dict[str, Callable[[], DataStreamWriter]] = {REALTIME_QUERY: realtime}
    queries.update({f"raw_{topic}": raw(topic) for topic in INPUT_TOPICS})
    queries["dead_letter"] = dead_letter
    return queries


def start_query(w: Wiring, name: str, build: Callable[[], DataStreamWriter],
                available_now: bool) -> StreamingQuery:
    """Start query ``name`` with its trigger (or available-now) in its scheduler pool: the
    realtime query every ``trigger_interval`` in pool ``realtime``, the others every
    ``raw_trigger_interval`` in pool ``background``."""
    realtime = name == REALTIME_QUERY
    writer = build()
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=w.settings.trigger_interval if realtime
                                else w.settings.raw_trigger_interval)
    context = w.spark.sparkContext
    context.setLocalProperty("spark.scheduler.pool", "realtime" if realtime else "background")
    try:
        return writer.start()
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]


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
    from streaming.kafka_source import register_kafka_source

    ensure_topics(platform.bootstrap_servers, ALL_TOPICS)
    if settings.source_format == "globalmart_kafka":
        register_kafka_source(spark)
    stats = BatchStats()
    listener = PipelineMetricsListener(platform.db_url, platform.bootstrap_servers, stats.pop)
    spark.streams.addListener(listener)
    wiring = Wiring(spark, settings, platform, stats, TopicWriter(platform.bootstrap_servers))
    builders = define_queries(wiring)
    running: dict[str, StreamingQuery] = {}
    restarts: dict[str, int] = dict.fromkeys(builders, 0)
    status = 0
    try:
        for name, build in builders.items():
            running[name] = start_query(wiring, name, build, available_now)
        echo(f"stream: {len(running)} queries running, checkpoints under {wiring.checkpoints}")
        next_line = time.monotonic() + settings.progress_interval_seconds
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
                running[name] = start_query(wiring, name, builders[name], available_now)
            if stop.is_set():
                break
            if available_now and not any(q.isActive for q in running.values()):
                echo("stream: caught up")
                break
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
        spark.streams.removeListener(listener)
        listener.close()
        wiring.writer.close()
    echo(f"stream: stopped (status {status})")
    return status


def run(settings: StreamingSettings, platform: PlatformSettings, available_now: bool = False,
        echo: Callable[[str], None] = log.info) -> int:
    """The ``globalmart stream`` process: migrate the schema, build the Spark session, serve
    until SIGINT/SIGTERM (or until caught up with ``available_now``), stop cleanly."""
    from globalmart import db
    from streaming.session import build_spark_session

    db.upgrade(platform.db_url)
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        echo(f"stream: {signal.Signals(signum).name} received, stopping the queries")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    spark = build_spark_session("globalmart-stream", settings.master, settings.shuffle_partitions,
                                extra_conf=SPARK_CONF)
    try:
        return serve(spark, settings, platform, stop, available_now, echo)
    finally:
        spark.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
