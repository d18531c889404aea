"""Throughput of the event generator, one process, to a local Kafka-protocol broker.

Two figures, measured in the same run against the same broker, alternately, ``--rounds``
times (best and median of each, and the ratio realistic / bare of each round):

- realistic: ``generator.runner.run`` — the loop ``globalmart generate`` runs — producing the
  full world (10 M users, 250,000 products, funnel sessions, stock, 1 % anomalies) in history
  mode (as fast as possible), Kafka only, until ``--events`` valid events are delivered
  (final flush included);
- bare: the same producer (``EventProducer.send``, same configuration) sending ``--events``
  messages encoded beforehand (the generator's own output), i.e. the cost of Kafka alone.

With ``--database-url`` (a migrated database), one more realistic run also writes the source
tables (customers, products, ground truth), as ``globalmart generate`` does by default.

Starts its own Apache Kafka broker (``globalmart.embedded.EmbeddedBroker``, free port) unless
``--bootstrap-servers`` is given.

Usage: python benchmarks/generator_throughput.py [--events 500000] [--rounds 2]
       [--bootstrap-servers HOST:PORT] [--compression lz4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast, get_args

from generator.catalog import Catalog
from generator.config import Compression, GeneratorSettings
from generator.producer import EventProducer
from generator.runner import build_simulator, run
from globalmart.contracts import ALL_TOPICS
from globalmart.embedded import EmbeddedBroker, free_port
from globalmart.kafka import ensure_topics

HISTORY_END = datetime(2026, 5, 10, tzinfo=UTC)


def settings_for(events: int, compression: Compression, seed: int) -> GeneratorSettings:
    """A history-mode run (no pacing) of ``events`` valid events, Kafka only."""
    return GeneratorSettings(
        write_sources=False, history_days=7,
        history_end=HISTORY_END, max_events=events, seed=seed, compression=compression,
        progress_interval=3600)


def pre_encoded(settings: GeneratorSettings, catalog: Catalog) -> list[tuple[str, bytes, bytes]]:
    """The generator's own messages, encoded in advance."""
    sim = build_simulator(settings, HISTORY_END, catalog)
    messages: list[tuple[str, bytes, bytes]] = []
    while sim.counts.valid < (settings.max_events or 0):
        messages += sim.step(limit=settings.max_events)[1]
    return messages


def bare_rate(bootstrap: str, messages: list[tuple[str, bytes, bytes]], compression: str) -> float:
    """Messages per second through the generator's producer, nothing else to do."""
    producer = EventProducer(bootstrap, compression=compression)
    started = time.monotonic()
    for i in range(0, len(messages), 5_000):
        producer.send(messages[i:i + 5_000])
    left = producer.flush(120)
    elapsed = time.monotonic() - started
    if left or producer.failed:
        raise RuntimeError(f"bare run: {left} undelivered, {dict(producer.failed)} failed")
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--compression", default="lz4", choices=get_args(Compression))
    parser.add_argument("--database-url", help="also measure a run writing the source tables")
    args = parser.parse_args()

    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker = EmbeddedBroker(free_port(), Path(tempfile.mkdtemp(prefix="gm-bench-")))
        broker.start()
        bootstrap = broker.bootstrap_servers
    try:
        ensure_topics(bootstrap, ALL_TOPICS)
        catalog = Catalog(250_000)
        compression = cast(Compression, args.compression)
        messages = pre_encoded(settings_for(args.events, compression, 1), catalog)
        realistic, bare = [], []
        for round_ in range(args.rounds):
            bare.append(bare_rate(bootstrap, messages, compression))
            summary = run(settings_for(args.events, compression, 2 + round_),
                          bootstrap_servers=bootstrap)
            if summary.failed or summary.undelivered:
                raise RuntimeError(f"realistic run lost messages: {summary.line()}")
            realistic.append(summary.rate)
            print(f"round {round_ + 1}: bare {bare[-1]:,.0f} msg/s, "
                  f"realistic {realistic[-1]:,.0f} events/s "
                  f"({realistic[-1] / bare[-1]:.0%} of bare; "
                  f"{summary.events['transactions']:,} transactions, "
                  f"{sum(summary.anomalies.values()):,} anomalies)", flush=True)
        ratios = [r / b for r, b in zip(realistic, bare, strict=True)]
        print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"compression {args.compression}, {args.events:,} events per measurement")
        print(f"bare produce (pre-encoded): best {max(bare):,.0f} msg/s, "
              f"median {statistics.median(bare):,.0f}")
        print(f"realistic generator:        best {max(realistic):,.0f} events/s, "
              f"median {statistics.median(realistic):,.0f}")
        print(f"realistic / bare, same round: median {statistics.median(ratios):.0%} "
              f"(min {min(ratios):.0%}, max {max(ratios):.0%})")
        if args.database_url:
            settings = settings_for(args.events, compression, 99).model_copy(
                update={"write_sources": True})
            summary = run(settings, bootstrap_servers=bootstrap, database_url=args.database_url)
            print(f"realistic with source tables: {summary.rate:,.0f} events/s "
                  f"({summary.customers:,} customers, {summary.products:,} products written)")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
