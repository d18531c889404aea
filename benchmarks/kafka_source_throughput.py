"""Throughput of the ``globalmart_kafka`` Spark source on an embedded Tansu broker.

1. Backlog drain: N events already in the four input topics (3 partitions each), read by a
   stream with Trigger.AvailableNow into Spark's ``noop`` sink, with and without
   maxOffsetsPerTrigger. Rows per second = N / wall time of the query (planning included).
2. Sustained: for each rate R, a producer paces R events/s for T seconds while a stream
   (processingTime trigger) reads them into a foreachBatch sink; per micro-batch the latency
   from the oldest and newest record's Kafka timestamp to the end of the batch, and how long
   after the last event the stream had read everything; once with one Spark task per Kafka
   partition (12) and once with maxInputPartitions=2.

Usage: python benchmarks/kafka_source_throughput.py [--backlog 300000] [--rates 10000,500]
       [--seconds 20] [--trigger-ms 500] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from pyspark.sql import functions as F

from globalmart.contracts import INPUT_TOPICS
from globalmart.embedded import EmbeddedBroker, free_port
from globalmart.kafka import ensure_topics
from streaming.kafka_source import register_kafka_source
from streaming.session import build_spark_session

PAYLOAD_BYTES = 400


def payload(i: int) -> bytes:
    """A JSON event of about PAYLOAD_BYTES bytes (the source does not parse it)."""
    body = {"event_id": f"{i:032x}", "event_time": "2026-01-01T00:00:00Z", "n": i}
    text = json.dumps(body)
    return (text[:-1] + ', "pad": "' + "x" * (PAYLOAD_BYTES - len(text) - 11) + '"}').encode()


def produce(bootstrap: str, count: int, rate: float | None = None) -> float:
    """Produce ``count`` events over the input topics (paced at ``rate``/s if given); return
    the seconds it took."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20 if rate else 100,
                         "batch.num.messages": 50_000, "queue.buffering.max.messages": 1_000_000})
    topics = list(INPUT_TOPICS)
    started = time.monotonic()
    for i in range(count):
        if rate and i % 100 == 0:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topics[i % len(topics)], key=str(i % 9973).encode(),
                                 value=payload(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return time.monotonic() - started


def drain(spark, bootstrap: str, expected: int, limit: int | None) -> tuple[float, int, int]:
    """Read the whole backlog once; return (seconds, rows, micro-batches)."""
    reader = (spark.readStream.format("globalmart_kafka")
              .option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", ",".join(INPUT_TOPICS))
              .option("startingOffsets", "earliest"))
    if limit:
        reader = reader.option("maxOffsetsPerTrigger", str(limit))
    started = time.monotonic()
    query = (reader.load().writeStream.format("noop")
             .option("checkpointLocation", tempfile.mkdtemp(prefix="gm-bench-ckpt-"))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    seconds = time.monotonic() - started
    rows = sum(p["numInputRows"] for p in query.recentProgress)
    batches = sum(1 for p in query.recentProgress if p["numInputRows"])
    if rows != expected:
        raise RuntimeError(f"read {rows} rows, expected {expected}")
    return seconds, rows, batches


def sustained(spark, bootstrap: str, rate: float, seconds: float, trigger_ms: int,
              max_input_partitions: int | None) -> dict:
    """Produce at ``rate`` for ``seconds`` while a stream reads; return latency and lag."""
    batches: list[tuple[int, float, float]] = []  # rows, oldest-record latency s, batch end

    def record(frame, batch_id: int) -> None:
        row = frame.agg(F.count("*").alias("n"), F.min("timestamp").alias("oldest"),
                        F.max("timestamp").alias("newest")).collect()[0]
        now = time.time()
        if row.n:
            batches.append((row.n, now - row.oldest.timestamp(), now - row.newest.timestamp()))

    reader = (spark.readStream.format("globalmart_kafka")
              .option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", ",".join(INPUT_TOPICS))
              .option("startingOffsets", "latest")
              .option("maxOffsetsPerTrigger", "100000"))
    if max_input_partitions:
        reader = reader.option("maxInputPartitions", str(max_input_partitions))
    query = (reader.load().writeStream.foreachBatch(record)
             .option("checkpointLocation", tempfile.mkdtemp(prefix="gm-bench-ckpt-"))
             .trigger(processingTime=f"{trigger_ms} milliseconds").start())
    try:
        deadline = time.monotonic() + 60
        while query.status["message"] != "Waiting for data to arrive":
            if time.monotonic() > deadline:
                raise TimeoutError("the stream did not start")
            time.sleep(0.1)
        total = int(rate * seconds)
        producer = threading.Thread(target=produce, args=(bootstrap, total, rate))
        producer.start()
        producer.join()
        produced_at = time.monotonic()
        deadline = produced_at + 120
        while sum(n for n, _, _ in batches) < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {sum(n for n, _, _ in batches)} of {total}")
            time.sleep(0.05)
        catch_up = time.monotonic() - produced_at
    finally:
        query.stop()
    oldest = sorted(lat for _, lat, _ in batches)
    newest = sorted(lat for _, _, lat in batches)
    return {
        "events": total,
        "batches": len(batches),
        "rows_per_batch_p50": statistics.median(n for n, _, _ in batches),
        "oldest_latency_p50_s": statistics.median(oldest),
        "oldest_latency_p95_s": oldest[int(0.95 * (len(oldest) - 1))],
        "newest_latency_p50_s": statistics.median(newest),
        "catch_up_after_last_event_s": catch_up,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=300_000)
    parser.add_argument("--rates", type=lambda text: [float(r) for r in text.split(",")],
                        default=[10_000.0, 500.0], help="comma-separated events/s to sustain")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--trigger-ms", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2, help="backlog drains (the first "
                        "one also warms up Spark and the Python workers)")
    args = parser.parse_args()

    broker = EmbeddedBroker(free_port(), Path(tempfile.mkdtemp(prefix="gm-bench-")))
    broker.start()
    spark = build_spark_session("kafka-source-benchmark", master="local[2]",
                                shuffle_partitions=2)
    try:
        register_kafka_source(spark)
        bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap, list(INPUT_TOPICS))
        took = produce(bootstrap, args.backlog)
        print(f"produced backlog: {args.backlog} events of ~{PAYLOAD_BYTES} B in {took:.1f} s "
              f"({args.backlog / took:,.0f}/s)")
        for run in range(1, args.repeat + 1):
            for limit in (None, 100_000):
                seconds, rows, count = drain(spark, bootstrap, args.backlog, limit)
                print(f"run {run}: backlog drain, maxOffsetsPerTrigger={limit}: {rows} rows in "
                      f"{seconds:.1f} s = {rows / seconds:,.0f} rows/s ({count} micro-batches)")
        for rate in args.rates:
            for tasks in (None, 2):
                result = sustained(spark, bootstrap, rate, args.seconds, args.trigger_ms, tasks)
                print(f"sustained {rate:,.0f} events/s for {args.seconds:.0f} s (trigger "
                      f"{args.trigger_ms} ms, maxInputPartitions={tasks}): "
                      f"{json.dumps(result, indent=1)}")
    finally:
        spark.stop()
        broker.stop()


if __name__ == "__main__":
    main()
