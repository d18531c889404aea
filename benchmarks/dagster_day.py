"""Dagster daily build at the brief's scale: wall time to materialize one day of 100,000
transactions through the warehouse and the marts (target ≤ 60 s), then a 30-day backfill.

Set-up (not timed): a fresh database, a tmp lake with the days' raw-layer Parquet written the
way the streaming app writes it, the source tables (customers, products) and the stream's
sales_metrics. Timed: ``daily_warehouse_job`` for one partition, exactly as the schedule or
the sensor launches it (in process, Spark session start included), then the same day again
(the idempotent replace), then a single-run backfill of ``--days`` days (one run over a
partition range, as the UI's backfill or ``dagster asset materialize --partition-range``).

Usage: .venv/bin/python benchmarks/dagster_day.py [--transactions 100000] [--days 30]
       [--backfill-transactions 100000]
PostgreSQL: GLOBALMART_BENCH_DATABASE_URL (default the local server, trust auth).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from globalmart import db  # noqa: E402
from globalmart_dagster.definitions import build_definitions  # noqa: E402
from tests.dagster.conftest import make_resources  # noqa: E402
from tests.dagster.dataset import (  # noqa: E402
    build_day,
    write_raw_layer,
    write_sources,
    write_stream_ledger,
)

ADMIN_URL = os.environ.get("GLOBALMART_BENCH_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
DAY = date(2026, 11, 20)


def _load_day(url: str, lake: Path, day: date, transactions: int, seed: int) -> None:
    data = build_day(day, seed=seed, transactions=transactions, users=200_000,
                     products=250_000, validate=False)
    write_raw_layer(lake, data)
    write_sources(url, data)
    write_stream_ledger(url, data)


def _step_times(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    started: dict[str, float] = {}
    spent: dict[str, float] = defaultdict(float)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            spent[event.step_key] += entry.timestamp - started.get(event.step_key, entry.timestamp)
    return dict(spent)


def _run(job, **kwargs) -> tuple[float, dg.ExecuteInProcessResult]:
    start = time.perf_counter()
    result = job.execute_in_process(**kwargs)
    return time.perf_counter() - start, result


def _report(title: str, seconds: float, result: dg.ExecuteInProcessResult,
            instance: dg.DagsterInstance) -> None:
    print(f"{title}: {seconds:.1f} s wall, success={result.success}")
    steps = _step_times(instance, result.run_id)
    for step, spent in sorted(steps.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {spent:6.1f} s  {step}")
    print(f"    {sum(steps.values()):6.1f} s  all {len(steps)} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--backfill-transactions", type=int, default=100_000)
    args = parser.parse_args()

    name = f"gm_bench_dagster_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(ADMIN_URL)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        db.upgrade(url)
        with tempfile.TemporaryDirectory() as tmp:
            lake = Path(tmp) / "lake"
            t0 = time.perf_counter()
            _load_day(url, lake, DAY, args.transactions, seed=1)
            print(f"set-up: one day of {args.transactions:,} transactions written in "
                  f"{time.perf_counter() - t0:.1f} s (not timed below)")
            with psycopg.connect(url) as conn:
                customers, products = conn.execute(
                    "SELECT (SELECT count(*) FROM source.customers), "
                    "(SELECT count(*) FROM source.products)").fetchone() or (0, 0)
            print(f"source: {customers:,} customers, {products:,} products")

            defs = build_definitions(make_resources(url, lake, shuffle_partitions=4))
            job = defs.resolve_job_def("daily_warehouse_job")
            instance = dg.DagsterInstance.ephemeral()
            seconds, result = _run(job, partition_key=DAY.isoformat(), instance=instance)
            _report(f"one day ({args.transactions:,} transactions)", seconds, result, instance)
            with psycopg.connect(url) as conn:
                facts = conn.execute("SELECT count(*) FROM warehouse.fact_sales").fetchone()
                sessions = conn.execute("SELECT count(*) FROM warehouse.fact_sessions").fetchone()
                rfm = conn.execute("SELECT count(*) FROM marts.customer_rfm_analysis").fetchone()
            print(f"    rows: fact_sales {facts[0]:,}, fact_sessions {sessions[0]:,}, "
                  f"customer_rfm_analysis {rfm[0]:,}")
            seconds, result = _run(job, partition_key=DAY.isoformat(), instance=instance)
            _report("same day again (replace)", seconds, result, instance)

            if args.days:
                first = DAY - timedelta(days=args.days)
                t0 = time.perf_counter()
                for n in range(args.days):
                    _load_day(url, lake, first + timedelta(days=n), args.backfill_transactions,
                              seed=100 + n)
                print(f"set-up: {args.days} more days of {args.backfill_transactions:,} "
                      f"transactions written in {time.perf_counter() - t0:.1f} s")
                last = DAY - timedelta(days=1)
                seconds, result = _run(job, instance=instance, tags={
                    "dagster/asset_partition_range_start": first.isoformat(),
                    "dagster/asset_partition_range_end": last.isoformat(),
                })
                _report(f"backfill of {args.days} days ({first}..{last}) in one run", seconds,
                        result, instance)
                print(f"    per day: {seconds / args.days:.1f} s")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    main()
