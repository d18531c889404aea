"""Benchmark of the whole streaming application (all queries) on this machine.

1. Throughput: a backlog of ``--backlog`` events (a realistic mix over the four input topics,
   event times spread over the last minutes) is drained with ``--available-now``; events per
   second = backlog / wall time from the start of the queries until every query caught up.
2. Latency at ``--rate`` events/s: the application runs continuously while events are produced
   at that rate; one transaction in 20 is high value, and the benchmark polls
   ``transaction_anomalies`` every 20 ms: latency = first seen in the table − event_time.

Runs its own broker (Tansu), a fresh PostgreSQL database (dropped at the end) and a temporary
lake. Usage: ``.venv/bin/python benchmarks/streaming_pipeline.py [--backlog N] [--rate R]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from psycopg import sql

from globalmart import db
from globalmart.contracts import ALL_TOPICS
from globalmart.embedded import EmbeddedBroker, free_port
from globalmart.kafka import ensure_topics
from globalmart.settings import PlatformSettings
from streaming.app import SPARK_CONF, serve
from streaming.config import StreamingSettings
from streaming.session import build_spark_session

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
QUERIES = 2  # realtime, raw
CATEGORIES = ["Electronics", "Books", "Clothing", "Home & Garden", "Sports"]
COUNTRIES = ["USA", "UK", "Canada", "Germany", "France"]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_event(rng: random.Random, moment: datetime, high_value: bool = False
               ) -> tuple[str, str, bytes]:
    """One event of the mix: 62% views, 25% cart events, 10% transactions, 3% inventory."""
    user = f"u{rng.randrange(50_000)}"
    base = {"event_id": str(uuid.uuid4()), "event_time": _iso(moment), "schema_version": 1}
    draw = rng.random()
    if high_value or 0.87 <= draw < 0.97:
        quantity = 1 if high_value else rng.randint(1, 3)
        price = "6000.00" if high_value else f"{rng.randint(10, 300)}.{rng.randint(0, 99):02d}"
        items = [{"product_id": f"p{rng.randrange(5000)}", "category": rng.choice(CATEGORIES),
                  "quantity": quantity, "unit_price": price}]
        total = sum(float(i["unit_price"]) * i["quantity"] for i in items)
        event = {**base, "transaction_id": str(uuid.uuid4()), "user_id": user,
                 "session_id": f"s-{user}", "country": rng.choice(COUNTRIES), "city": "X",
                 "payment_method": "paypal", "currency": "USD", "items": items,
                 "total_amount": f"{total:.2f}"}
        return "transactions", user, json.dumps(event).encode()
    if draw < 0.62:
        event = {**base, "user_id": user, "session_id": f"s-{user}",
                 "product_id": f"p{rng.randrange(5000)}", "category": rng.choice(CATEGORIES),
                 "duration_seconds": rng.randint(5, 300), "device": "mobile",
                 "country": rng.choice(COUNTRIES)}
        return "product_views", user, json.dumps(event).encode()
    if draw < 0.87:
        event = {**base, "user_id": user, "session_id": f"s-{user}",
                 "product_id": f"p{rng.randrange(5000)}",
                 "action": rng.choice(["add", "add", "remove", "update"]), "quantity": 1}
        return "cart_events", user, json.dumps(event).encode()
    product = f"p{rng.randrange(5000)}"
    event = {**base, "product_id": product, "kind": "restock", "quantity_delta": 50}
    return "inventory_events", product, json.dumps(event).encode()


def produce_backlog(bootstrap: str, count: int) -> None:
    """``count`` events with event times spread evenly over the last ``count / 2000`` seconds."""
    rng = random.Random(1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 500_000})
    span = timedelta(seconds=count / 2000)
    start = datetime.now(UTC) - span
    for i in range(count):
        topic, key, value = make_event(rng, start + span * (i / count))
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def measure_throughput(spark, platform: PlatformSettings, backlog: int) -> float:
    """Drain the backlog with every query; return events/s."""
    settings = StreamingSettings(trigger_interval="1 second", max_offsets_per_trigger=50_000,
                                 checkpoint_root=f"{platform.lake}/checkpoints-throughput")
    started = time.monotonic()
    assert serve(spark, settings, platform, threading.Event(), available_now=True) == 0
    return backlog / (time.monotonic() - started)


def measure_latency(spark, platform: PlatformSettings, rate: float, seconds: float
                    ) -> list[float]:
    """Latencies (s) of high-value transactions, event time → visible in PostgreSQL."""
    settings = StreamingSettings(trigger_interval="1 second", starting_offsets="latest",
                                 checkpoint_root=f"{platform.lake}/checkpoints-latency")
    stop = threading.Event()
    app = threading.Thread(target=serve, args=(spark, settings, platform, stop), daemon=True)
    app.start()
    rng = random.Random(2)
    producer = Producer({"bootstrap.servers": platform.bootstrap_servers, "linger.ms": 5})
    sent: dict[str, datetime] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    warm = threading.Event()  # every query has processed a batch: stop ignoring the start

    def poll() -> None:
        with psycopg.connect(platform.db_url, autocommit=True) as conn:
            while not done.is_set() or len(seen) < len(sent):
                if not warm.is_set() and conn.execute(
                        "SELECT count(DISTINCT query_name) FROM pipeline_metrics "
                        "WHERE input_rows > 0").fetchone()[0] >= QUERIES:
                    warm.set()
                for (txid,) in conn.execute(
                        "SELECT transaction_id FROM transaction_anomalies "
                        "WHERE anomaly_type = 'high_value'").fetchall():
                    if txid not in seen:
                        seen[txid] = time.time()
                if done.is_set() and time.monotonic() > give_up:
                    break
                time.sleep(0.02)

    give_up = float("inf")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = 1.0 / rate
    next_at = time.monotonic()
    end = float("inf")
    warm_by = time.monotonic() + 300
    n = 0
    while time.monotonic() < end:
        if not warm.is_set() and time.monotonic() > warm_by:
            raise RuntimeError("the queries did not all process a batch within 300 s")
        if warm.is_set() and end == float("inf"):
            end = time.monotonic() + seconds
        now = datetime.now(UTC)
        high = n % 200 == 0  # 1 in 20 transactions (transactions are 1 in 10 events)
        topic, key, value = make_event(rng, now, high_value=high)
        if high and warm.is_set():
            sent[json.loads(value)["transaction_id"]] = now
        producer.produce(topic, key=key.encode(), value=value)
        producer.poll(0)
        n += 1
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    producer.flush(30)
    give_up = time.monotonic() + 30
    done.set()
    poller.join()
    stop.set()
    app.join(120)
    return sorted(seen[t] - sent[t].timestamp() for t in sent if t in seen)


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gm-stream-bench-"))
    name = f"gm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    db.upgrade(url)
    broker = EmbeddedBroker(free_port(), work)
    broker.start()
    spark = build_spark_session("streaming-benchmark", "local[2]", extra_conf=SPARK_CONF)
    try:
        ensure_topics(broker.bootstrap_servers, ALL_TOPICS)
        platform = PlatformSettings(database_url=url,
                                    kafka_bootstrap_servers=broker.bootstrap_servers,
                                    lake_path=str(work / "lake"))
        started = time.monotonic()
        produce_backlog(broker.bootstrap_servers, args.backlog)
        print(f"backlog: {args.backlog:,} events produced in {time.monotonic() - started:.1f} s")
        rate = measure_throughput(spark, platform, args.backlog)
        print(f"throughput: {rate:,.0f} events/s draining {args.backlog:,} events "
              f"(all {QUERIES} queries, local[2])")
        with psycopg.connect(url) as conn:
            for query_name, batches, mean_ms, rows in conn.execute(
                    "SELECT query_name, count(DISTINCT batch_id), avg(batch_duration_ms), "
                    "sum(input_rows) FROM pipeline_metrics GROUP BY 1 ORDER BY 1"):
                print(f"  {query_name:22s} {batches:3d} batches, mean {mean_ms:7.0f} ms, "
                      f"{rows:,} rows")
            # the latency run starts its queries afresh (new checkpoints, lake and state)
            conn.execute("TRUNCATE pipeline_metrics, stream_state.batch_commits, "
                         "stream_state.seen_events, stream_state.query_progress")
        latency_platform = platform.model_copy(update={"lake_path": str(work / "lake-latency")})
        latencies = measure_latency(spark, latency_platform, args.rate, args.seconds)
        if latencies:
            p50 = statistics.median(latencies)
            p95 = latencies[int(0.95 * (len(latencies) - 1))]
            print(f"latency at {args.rate:g} events/s: p50 {p50:.2f} s, p95 {p95:.2f} s, "
                  f"max {latencies[-1]:.2f} s over {len(latencies)} high-value transactions")
        else:
            print("latency: no high-value transaction reached the table")
        with psycopg.connect(url) as conn:
            for query_name, mean_ms, p95_ms in conn.execute(
                    "SELECT query_name, avg(batch_duration_ms), percentile_cont(0.95) WITHIN "
                    "GROUP (ORDER BY batch_duration_ms) FROM pipeline_metrics "
                    "WHERE input_rows > 0 GROUP BY 1 ORDER BY 1"):
                print(f"  {query_name:22s} batch mean {mean_ms:6.0f} ms, p95 {p95_ms:6.0f} ms")
    finally:
        spark.stop()
        broker.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    main()
