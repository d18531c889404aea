"""Benchmark of where the realtime query validates its records: on the driver (as before:
the Kafka records are collected, then validated by the driver's Python) or on the executors
(now: ``mapInArrow`` with :func:`streaming.transforms.parse.validate_batches`, the driver
collects typed Arrow batches). Both end with the frame the driver's transforms read.

``--events`` records of the mix of ``streaming_pipeline.py`` (``--bad`` of them malformed) are
cached in a local Spark session in ``--partitions`` partitions (as the Kafka source's tasks
would read them), then each way runs ``--rounds`` times, alternately. Printed per event: the
wall time until the driver holds the frame, and the CPU time the driver's Python process spent
(the executors' Python workers and the JVM are other processes).

Usage: ``.venv/bin/python benchmarks/driver_validation.py [--events 10000] [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
from pyspark.sql import DataFrame
from streaming_pipeline import make_event  # the benchmark next to this one

from globalmart.spark import build_spark_session
from streaming.transforms.parse import (
    KAFKA_COLUMNS,
    check_records,
    frame,
    kafka_records,
    unship,
    validate_stream,
)


def on_the_driver(records: DataFrame) -> pd.DataFrame:
    """Collect the Kafka records, validate them in the driver's Python."""
    return frame(check_records(records.toArrow()))


def on_the_executors(records: DataFrame) -> pd.DataFrame:
    """Validate on the executors, collect the typed records."""
    return frame(unship(validate_stream(records).toArrow()))


def main() -> None:
    """Run both ways alternately and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--bad", type=float, default=0.0)
    args = parser.parse_args()
    rng = random.Random(1)
    start = datetime.now(UTC) - timedelta(minutes=1)
    rows = []
    for i in range(args.events):
        topic, _key, value = make_event(rng, start + timedelta(microseconds=i))
        if rng.random() < args.bad:
            value = value[: len(value) // 2]
        rows.append((topic, i % args.partitions, i, value))
    spark = build_spark_session("driver-validation-benchmark",
                                master=f"local[{args.partitions}]")
    records = (spark.createDataFrame(kafka_records(rows).to_pandas())
               .select(*KAFKA_COLUMNS).repartition(args.partitions).cache())
    records.count()
    ways: dict[str, Callable[[DataFrame], pd.DataFrame]] = {
        "validated on the driver (before)": on_the_driver,
        "validated on the executors (now)": on_the_executors}
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds + 1):  # the first round warms both up and is not counted
        for name, way in ways.items():
            started, used = time.perf_counter(), time.process_time()
            result = way(records)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
            assert len(result) == args.events
    print(f"{args.events:,} records ({args.bad:.0%} malformed) in {args.partitions} partitions, "
          f"{args.rounds} rounds each, medians per event:")
    for name in ways:
        print(f"  {name:34s} wall {statistics.median(wall[name][1:]) / args.events * 1e6:6.1f} µs"
              f"   driver CPU {statistics.median(cpu[name][1:]) / args.events * 1e6:6.1f} µs")
    spark.stop()


if __name__ == "__main__":
    main()
