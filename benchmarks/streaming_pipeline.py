"""Benchmark of the whole streaming application (realtime query and raw-layer flushes) on
this machine.

1. Throughput: a backlog of ``--backlog`` events (a mix over the four input topics, event
   times spread over the last minutes) is drained with ``--available-now``; events per second =
   backlog / wall time from the start of the query until it caught up and the raw layer was
   flushed.
2. Latency at ``--rate`` events/s: the application runs continuously while events are produced
   at that rate; one transaction in 200 events is high value, and the benchmark polls
   ``transaction_anomalies`` every 20 ms: latency = first seen in the table − event_time.
3. Sustained rate (last: a rate that is not sustained leaves the broker and database busy for
   a while): for each rate of ``--sustain`` (events/s), events are produced at that rate
   for ``--sustain-seconds`` while the application runs; the lag (events produced minus events
   in the batches the query committed, from its checkpoint) is sampled every second. A rate
   is sustained when the lag does not grow — its least-squares slope over the run is below
   1 % of the rate (the application processes at least 99 % of what arrives)
   — and the application catches up within 10 s after the producer stops.

Runs its own Apache Kafka broker (``globalmart.embedded``), a fresh PostgreSQL database
(dropped at the end) and a temporary lake.
Usage: ``.venv/bin/python benchmarks/streaming_pipeline.py [--backlog N] [--rate R] [--bad 0.01]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from generator.producer import EventProducer
from globalmart import db
from globalmart.contracts import ALL_TOPICS, INPUT_TOPICS
from globalmart.embedded import EmbeddedBroker, free_port
from globalmart.kafka import end_offsets, ensure_topics
from globalmart.settings import PlatformSettings
from globalmart.spark import build_spark_session
from streaming.app import SPARK_CONF, serve
from streaming.config import StreamingSettings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
QUERIES = 2  # names in pipeline_metrics once warm: the realtime query and the raw-layer flush
CATEGORIES = ["Electronics", "Books", "Clothing", "Home & Garden", "Sports"]
COUNTRIES = ["USA", "UK", "Canada", "Germany", "France"]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event_id(rng: random.Random, moment: datetime) -> str:
    """A version-7 UUID for an event at ``moment``, as the generator makes them: the Unix time
    in milliseconds, then random bits."""
    millis = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return str(uuid.UUID(int=(millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
                         | (0b10 << 62) | rng.getrandbits(62)))


def make_event(rng: random.Random, moment: datetime, high_value: bool = False
               ) -> tuple[str, str, bytes]:
    """One event of the mix: 62% views, 25% cart events, 10% transactions, 3% inventory."""
    user = f"u{rng.randrange(50_000)}"
    base = {"event_id": event_id(rng, moment), "event_time": _iso(moment), "schema_version": 1}
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


# Bad records (``--bad``): each kind a class the stream must reject or isolate without
# stopping (see docs/streaming.md): not JSON, a NUL in a string, a time far outside the
# window, a magnitude beyond the columns, a string or boolean where a number belongs, empty.
BAD_KINDS = ("not json", "nul", "far future", "far past", "huge amount", "string quantity",
             "boolean quantity", "empty")


def make_bad_event(rng: random.Random, moment: datetime) -> tuple[str, str, bytes]:
    """One bad record of a kind of ``BAD_KINDS``, on a topic of the mix."""
    topic, key, value = make_event(rng, moment)
    kind = rng.choice(BAD_KINDS)
    if kind == "not json":
        return topic, key, value[: len(value) // 2]
    if kind == "empty":
        return topic, key, b""
    event = json.loads(value)
    if kind == "nul":
        event["event_id"] = event["event_id"][:8] + "\u0000" + event["event_id"][9:]
    elif kind == "far future":
        event["event_time"] = "9999-12-31T23:59:59Z"
    elif kind == "far past":
        event["event_time"] = "0001-01-01T00:00:00Z"
    elif topic == "transactions" and kind == "huge amount":
        event["items"][0]["unit_price"] = "9" * 30 + ".99"
    elif topic == "inventory_events":
        event["quantity_delta"] = "50" if kind == "string quantity" else 10**30
    elif "items" in event:
        event["items"][0]["quantity"] = "2" if kind == "string quantity" else True
    else:
        event["quantity" if topic == "cart_events" else "duration_seconds"] = (
            "2" if kind == "string quantity" else True)
    return topic, key, json.dumps(event).encode()


def next_event(rng: random.Random, moment: datetime, bad: float, high_value: bool = False
               ) -> tuple[str, str, bytes]:
    """An event of the mix, or with probability ``bad`` a bad record."""
    if bad and not high_value and rng.random() < bad:
        return make_bad_event(rng, moment)
    return make_event(rng, moment, high_value=high_value)


def produce_backlog(bootstrap: str, count: int, bad: float = 0.0) -> None:
    """``count`` events with event times spread evenly over the last ``count / 2000`` seconds
    (a share ``bad`` of them bad records)."""
    rng = random.Random(1)
    producer = EventProducer(bootstrap)
    span = timedelta(seconds=count / 2000)
    start = datetime.now(UTC) - span
    producer.send(_encoded(next_event(rng, start + span * (i / count), bad))
                  for i in range(count))
    assert producer.flush(120) == 0


def _encoded(event: tuple[str, str, bytes]) -> tuple[str, bytes, bytes]:
    topic, key, value = event
    return topic, key.encode(), value


def measure_throughput(spark, platform: PlatformSettings, backlog: int) -> float:
    """Drain the backlog with every query; return events/s."""
    settings = StreamingSettings(trigger_interval="1 second",
                                 checkpoint_root=f"{platform.lake}/checkpoints-throughput")
    started = time.monotonic()
    assert serve(spark, settings, platform, threading.Event(), available_now=True) == 0
    return backlog / (time.monotonic() - started)


def _produce(bootstrap: str, rate: Any, stop: Any, count: Any, high_value_every: int,
             bad: float) -> None:
    """Body of the producing process: the event mix at ``rate.value`` events/s, sent by the
    generator's producer (its defaults: linger 200 ms, lz4) in the events due every 5 ms."""
    rng = random.Random(2)
    producer = EventProducer(bootstrap)
    n, due, last = 0, 0.0, time.monotonic()
    while not stop.is_set():
        time.sleep(0.005)
        now = time.monotonic()
        due += (now - last) * rate.value  # the rate may change while producing
        last = now
        moment = datetime.now(UTC)
        batch = []
        while due >= 1:
            high = bool(high_value_every) and n % high_value_every == 0
            batch.append(_encoded(next_event(rng, moment, bad, high_value=high)))
            n, due = n + 1, due - 1
        producer.send(batch)
        count.value = n
    producer.flush(60)


class Producing:
    """Produces the event mix at ``rate`` events/s from its own process (so it does not take
    the streaming driver's interpreter lock), until finished."""

    def __init__(self, bootstrap: str, rate: float, high_value_every: int = 0,
                 bad: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._rate, self._count = context.Value("d", rate), context.Value("q", 0)
        self._stop = context.Event()
        self._process = context.Process(
            target=_produce, daemon=True,
            args=(bootstrap, self._rate, self._stop, self._count, high_value_every, bad))

    @property
    def count(self) -> int:
        """Events handed to the producer so far."""
        return int(self._count.value)

    def set_rate(self, rate: float) -> None:
        """Produce at ``rate`` events/s from now on."""
        self._rate.value = rate

    def start(self) -> Producing:
        self._process.start()
        return self

    def finish(self) -> None:
        self._stop.set()
        self._process.join(120)


def committed_offsets(checkpoint: Path) -> dict[tuple[str, int], int]:
    """End offsets of the last batch a query committed (from its Spark checkpoint: the batch's
    sink work, including the PostgreSQL commit, is done)."""
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")]
    if not commits:
        return {}
    ends = json.loads((checkpoint / "offsets" / str(max(commits))).read_text().splitlines()[-1])
    return {(topic, int(p)): offset for topic, parts in ends.items()
            for p, offset in parts.items()}


def measure_sustained(spark, platform: PlatformSettings, rate: float, seconds: float,
                      bad: float = 0.0) -> tuple[float, list[int], float, float | None]:
    """Produce at ``rate`` for ``seconds`` while the application runs. Returns the rate
    actually produced, the mean lag of each tenth of the run (every second: the events produced
    since the start minus those in batches the query committed since then), the lag's growth
    (records/s, least squares) and the seconds needed to catch up after the end (None if not
    within 120 s)."""
    settings = StreamingSettings(trigger_interval="1 second", starting_offsets="latest",
                                 checkpoint_root=f"{platform.lake}/checkpoints-{rate:g}")
    stop = threading.Event()
    app = threading.Thread(target=serve, args=(spark, settings, platform, stop), daemon=True)
    app.start()
    producing = Producing(platform.bootstrap_servers, 100, bad=bad).start()  # warm-up trickle
    with psycopg.connect(platform.db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 300
        while not conn.execute("SELECT count(*) FROM stream_state.batch_commits "
                               "WHERE query_name = 'realtime'").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the application did not process a batch within 300 s")
            time.sleep(0.2)
        checkpoint = Path(settings.checkpoint_root) / "realtime"
        producing.set_rate(rate)
        produced_before, started = producing.count, time.monotonic()
        committed_before = sum(committed_offsets(checkpoint).values())
        samples: list[tuple[float, int]] = []
        while time.monotonic() - started < seconds:
            time.sleep(1)  # sampling period, not synchronisation
            behind = ((producing.count - produced_before)
                      - (sum(committed_offsets(checkpoint).values()) - committed_before))
            samples.append((time.monotonic() - started, behind))
        producing.finish()
        produced_rate = (producing.count - produced_before) / (time.monotonic() - started)
        ended = time.monotonic()
        produced_ends = end_offsets(platform.bootstrap_servers, INPUT_TOPICS)
        caught_up = None
        while time.monotonic() - ended < 120:
            done = committed_offsets(checkpoint)
            if all(done.get(key, 0) >= end for key, end in produced_ends.items()):
                caught_up = time.monotonic() - ended
                break
            time.sleep(0.1)
    stop.set()
    app.join(120)
    tenths = [[lag for t, lag in samples if i * seconds / 10 <= t < (i + 1) * seconds / 10]
              for i in range(10)]
    growth = statistics.linear_regression([t for t, _ in samples],
                                          [lag for _, lag in samples]).slope
    return (produced_rate, [int(statistics.mean(lags)) for lags in tenths if lags], growth,
            caught_up)


def measure_latency(spark, platform: PlatformSettings, rate: float, seconds: float,
                    bad: float = 0.0) -> list[float]:
    """Latencies (s) of high-value transactions: first seen in PostgreSQL − event time."""
    settings = StreamingSettings(trigger_interval="1 second", starting_offsets="latest",
                                 checkpoint_root=f"{platform.lake}/checkpoints-latency")
    stop = threading.Event()
    app = threading.Thread(target=serve, args=(spark, settings, platform, stop), daemon=True)
    app.start()
    producing = Producing(platform.bootstrap_servers, rate, high_value_every=200,
                          bad=bad).start()
    seen: dict[str, float] = {}
    with psycopg.connect(platform.db_url, autocommit=True) as conn:
        warm_by = time.monotonic() + 300
        while conn.execute("SELECT count(DISTINCT query_name) FROM pipeline_metrics "
                           "WHERE input_rows > 0").fetchone()[0] < QUERIES:
            if time.monotonic() > warm_by:
                raise RuntimeError("the application did not warm up within 300 s")
            time.sleep(0.2)
        # count what is produced once the application is warm, for ``seconds``; keep polling
        # a little longer for the last ones
        warm = datetime.now(UTC)
        until = warm + timedelta(seconds=seconds)
        end = time.monotonic() + seconds + 15
        latencies: dict[str, float] = {}
        while time.monotonic() < end:
            for txid, event_time in conn.execute(
                    "SELECT transaction_id, event_time FROM transaction_anomalies "
                    "WHERE anomaly_type = 'high_value' AND event_time BETWEEN %s AND %s",
                    (warm, until)):
                if txid not in seen:
                    seen[txid] = time.time()
                    latencies[txid] = seen[txid] - event_time.timestamp()
            time.sleep(0.02)
    producing.finish()
    stop.set()
    app.join(120)
    return sorted(latencies.values())


def fresh(url: str, platform: PlatformSettings, label: str) -> PlatformSettings:
    """The platform for a new run: the stream's state and metrics emptied, its own lake."""
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE pipeline_metrics, stream_state.batch_commits, "
                     "stream_state.seen_events, stream_state.query_progress, "
                     "stream_state.raw_buffer")
        conn.execute("UPDATE stream_state.seen_generations SET newest = NULL")
    return platform.model_copy(update={"lake_path": f"{platform.lake}-{label}"})


def main() -> None:
    """Run the measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--sustain", default="2500,5000,7500,10000",
                        help="comma-separated rates (events/s) to hold; empty to skip")
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bad", type=float, default=0.0,
                        help="share of bad records mixed in (0.01: 1 %%; kinds in BAD_KINDS)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the application's per-batch times (records collected, "
                             "validation, compute and commit; Spark's own steps) and vacuums")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(format="%(asctime)s %(message)s")
        for name in ("streaming.sinks", "streaming.metrics"):
            logging.getLogger(name).setLevel(logging.DEBUG)
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
        produce_backlog(broker.bootstrap_servers, args.backlog, args.bad)
        print(f"backlog: {args.backlog:,} events produced in {time.monotonic() - started:.1f} s")
        rate = measure_throughput(spark, platform, args.backlog)
        print(f"throughput: {rate:,.0f} events/s draining {args.backlog:,} events (local[2]; "
              f"bad records: {args.bad:.1%})")
        with psycopg.connect(url) as conn:
            letters = conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
            print(f"  dead letters: {letters:,}")
            for query_name, batches, mean_ms, rows in conn.execute(
                    "SELECT query_name, count(DISTINCT batch_id), avg(batch_duration_ms), "
                    "sum(input_rows) FROM pipeline_metrics GROUP BY 1 ORDER BY 1"):
                print(f"  {query_name:10s} {batches:3d} batches, mean {mean_ms:7.0f} ms, "
                      f"{rows:,} rows")
        latencies = measure_latency(spark, fresh(url, platform, "latency"), args.rate,
                                    args.seconds, args.bad)
        if latencies:
            p50 = statistics.median(latencies)
            p95 = latencies[int(0.95 * (len(latencies) - 1))]
            print(f"latency at {args.rate:g} events/s: p50 {p50:.2f} s, p95 {p95:.2f} s, "
                  f"max {latencies[-1]:.2f} s over {len(latencies)} high-value transactions")
        else:
            print("latency: no high-value transaction reached the table")
        with psycopg.connect(url) as conn:  # the latency run's batches
            for query_name, mean_ms, p95_ms in conn.execute(
                    "SELECT query_name, avg(batch_duration_ms), percentile_cont(0.95) WITHIN "
                    "GROUP (ORDER BY batch_duration_ms) FROM pipeline_metrics "
                    "WHERE input_rows > 0 GROUP BY 1 ORDER BY 1"):
                print(f"  {query_name:10s} batch mean {mean_ms:6.0f} ms, p95 {p95_ms:6.0f} ms")
        for target in [float(r) for r in args.sustain.split(",") if r.strip()]:
            produced, lags, growth, caught_up = measure_sustained(
                spark, fresh(url, platform, f"sustain-{target:g}"), target,
                args.sustain_seconds, args.bad)
            held = growth < 0.01 * target and caught_up is not None and caught_up <= 10
            after = "no" if caught_up is None else f"in {caught_up:.1f} s"
            print(f"sustain {target:,.0f} events/s (produced {produced:,.0f}/s for "
                  f"{args.sustain_seconds:g} s): lag growing {growth:+,.0f}/s, caught up "
                  f"{after} -> {'sustained' if held else 'NOT sustained'}; mean lag per tenth "
                  f"of the run: {', '.join(f'{lag / 1000:.1f} k' for lag in lags)}", flush=True)
    finally:
        spark.stop()
        broker.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    main()
