"""Benchmark of the realtime query's batch work on the driver, in process: de-duplication,
transforms and the PostgreSQL transaction of :class:`streaming.sinks.batch.RealtimeSink`, without
Spark or a broker (the batches are validated beforehand, as the executors do).

``--batches`` batches of ``--events`` events each (the mix of ``streaming_pipeline.py``: 50,000
users whose events extend one long session each), one second of event time apart, are given
to ``RealtimeSink.write_batch`` one after the other; the tables it rewrites are vacuumed every 10
batches, as the application does every 10 s at one batch a second. Prints the mean time per
batch for each tenth of the run and, at the end, the time per event of the largest steps
(``--breakdown``). ``--prefill N`` first fills ``stream_state.seen_events`` with N ids spread
over the 10 minutes before the first batch (the state a 10-minute watermark holds at N / 600
events/s); ``--random-ids`` gives events and prefill version-4 ids instead of the generator's
time-ordered version-7 ids. Uses a fresh PostgreSQL database, dropped at the end.

Usage: ``.venv/bin/python benchmarks/realtime_batch.py [--batches 60] [--prefill 6000000]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import pkgutil
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from streaming_pipeline import ADMIN_URL, make_event  # the benchmark next to this one

from globalmart import db
from streaming import sinks
from streaming.notifier import LogNotifier
from streaming.sinks.batch import BatchStats, RealtimeSink
from streaming.sinks.store import Postgres
from streaming.transforms.parse import check_records, kafka_records

STEPS = ("claim_events", "stage_session_pieces", "merge_staged_sessions",
         "session_metrics", "raw_rows", "detect_rapid_fire")
LATENESS = timedelta(minutes=10)
_ID_FROM_TIME = ("(lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') "
                 "|| substr(md5(random()::text), 1, 20))::uuid")


def timed_steps(spent: dict[str, float]) -> None:
    """Wrap the :data:`STEPS` so their time adds up in ``spent``: in every module of
    :mod:`streaming.sinks` that holds one (where it is defined and where it is imported), so
    that each call counts once wherever it is made."""
    def wrap(name: str, step: Callable) -> Callable:
        @functools.wraps(step)
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return run

    for found in pkgutil.iter_modules(sinks.__path__, f"{sinks.__name__}."):
        module = importlib.import_module(found.name)
        for name in STEPS:
            if hasattr(module, name):
                setattr(module, name, wrap(name, getattr(module, name)))


def prefill(url: str, count: int, before: datetime, random_ids: bool) -> None:
    """``count`` seen ids with event times spread over the 10 minutes before ``before``."""
    ids = "gen_random_uuid()" if random_ids else _ID_FROM_TIME
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO stream_state.seen_events (generation, topic, event_id, event_time) "
            f"SELECT 0, 'product_views', {ids}, t FROM ("
            f"  SELECT %s::timestamptz - interval '600 s' + (i::float8 / %s) * interval '600 s'"
            f"  AS t FROM generate_series(1, %s) i) g", (before, count, count))
        conn.execute("UPDATE stream_state.seen_generations SET newest = "
                     "(SELECT max(event_time) FROM stream_state.seen_events) WHERE current")
        conn.execute("VACUUM ANALYZE stream_state.seen_events_0")


def batches(count: int, size: int, start: datetime, random_ids: bool) -> list:
    """``count`` Arrow batches of validated Kafka records, one second of event time each."""
    rng = random.Random(1)
    made, offset = [], 0
    for b in range(count):
        rows = []
        for i in range(size):
            topic, _key, value = make_event(rng, start + timedelta(seconds=b + i / size))
            if random_ids:
                value = value.replace(json.loads(value)["event_id"].encode(),
                                      str(uuid.uuid4()).encode(), 1)
            rows.append((topic, 0, offset, value))
            offset += 1
        made.append(check_records(kafka_records(rows)))
    return made


def main() -> None:
    """Run the batches and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--prefill", type=int, default=0)
    parser.add_argument("--random-ids", action="store_true")
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    name = f"gm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    spent: dict[str, float] = defaultdict(float)
    try:
        db.upgrade(url)
        start = datetime.now(UTC) - timedelta(seconds=args.batches)
        if args.prefill:
            prefill(url, args.prefill, start, args.random_ids)
        work = batches(args.batches, args.events, start, args.random_ids)
        if args.breakdown:
            timed_steps(spent)
        sink = RealtimeSink("realtime", Postgres(url), None, LogNotifier(), BatchStats(),
                            LATENESS, 0.8)
        took, vacuums = [], []
        for batch_id, records in enumerate(work):
            started = time.perf_counter()
            sink.write_batch(records, batch_id)
            took.append(time.perf_counter() - started)
            if batch_id % 10 == 9:
                started = time.perf_counter()
                sink.postgres.vacuum()
                vacuums.append(time.perf_counter() - started)
        sink.postgres.close()
        tenth = max(1, len(took) // 10)
        means = [sum(took[i:i + tenth]) / len(took[i:i + tenth]) * 1000
                 for i in range(0, len(took), tenth)]
        ids = "random v4" if args.random_ids else "v7"
        print(f"{args.batches} batches of {args.events:,} events ({ids} ids, {args.prefill:,} "
              f"seen ids before): mean ms per batch per tenth: "
              + ", ".join(f"{m:.0f}" for m in means))
        print(f"last tenth: {means[-1] * 1000 / args.events:.1f} µs per event; vacuum every 10 "
              f"batches: " + ", ".join(f"{v * 1000:.0f}" for v in vacuums) + " ms")
        for step, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {step:24s} {seconds / len(took) * 1000:7.1f} ms per batch, "
                  f"{seconds / len(took) / args.events * 1e6:5.1f} µs per event")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
