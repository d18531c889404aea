"""The generator against a real broker and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from pydantic import ValidationError

from generator.catalog import Catalog
from generator.config import GeneratorSettings
from generator.encoding import TOPICS
from generator.runner import run
from globalmart.contracts import parse_event
from tests.generator.conftest import HISTORY_END, consume, simulate
from tests.generator.rules import expected_anomalies, transactions

GLOBALMART = str(Path(sys.executable).with_name("globalmart"))


def _valid(topic: str, value: bytes) -> bool:
    try:
        parse_event(topic, value)
    except (ValidationError, ValueError):
        return False
    return True


def test_kafka_receives_exactly_the_seeded_events_and_the_ground_truth_matches(
        broker, make_database, catalog: Catalog) -> None:
    url = make_database()
    options = {"seed": 11, "anomaly_rate": 0.05, "malformed_rate": 0.01, "resend_rate": 0.01}
    settings = GeneratorSettings(history_days=1, history_end=HISTORY_END, max_events=30_000,
                                 progress_interval=1.0, **options)
    lines: list[str] = []
    summary = run(settings, bootstrap_servers=broker.bootstrap_servers, database_url=url,
                  echo=lines.append)

    assert summary.valid == 30_000
    assert summary.failed == 0 and summary.undelivered == 0
    sent = summary.valid + summary.malformed + summary.resends
    assert summary.delivered == sent
    assert lines and lines[-1].startswith("generator: ")
    received = consume(broker.bootstrap_servers, list(TOPICS), sent)
    assert len(received) == sent

    # The same seed gives the same messages as the pure simulation, byte for byte.
    expected = simulate(catalog, 30_000, **options)
    assert Counter((t, k, v) for t, _, k, v in received) == Counter(expected.messages)
    # Keys decide partitions: one partition per key.
    partitions: dict[tuple[str, bytes | None], set[int]] = {}
    for topic, partition, key, _ in received:
        partitions.setdefault((topic, key), set()).add(partition)
    assert all(len(p) == 1 for p in partitions.values())

    invalid = [(t, v) for t, _, _, v in received if not _valid(t, v)]
    assert len(invalid) == summary.malformed > 0
    duplicates = sum(n - 1 for n in Counter(v for _, _, _, v in received).values())
    assert duplicates == summary.resends > 0

    with psycopg.connect(url) as conn:
        truth = set(conn.execute(
            "SELECT transaction_id, anomaly_type FROM source.injected_anomalies").fetchall())
        customers = {r[0] for r in conn.execute("SELECT user_id FROM source.customers")}
        products = {r[0] for r in conn.execute("SELECT product_id FROM source.products")}
    valid_tx = [v for t, _, _, v in received if t == "transactions" and _valid(t, v)]
    assert truth == expected_anomalies(transactions(valid_tx))
    assert len(truth) == sum(summary.anomalies.values()) > 0
    users = {json.loads(v)["user_id"] for t, _, _, v in received
             if t != "inventory_events" and _valid(t, v)}
    assert customers == users
    assert len(products) == summary.products


def test_live_events_are_stamped_now_at_the_rate(broker, catalog: Catalog) -> None:
    settings = GeneratorSettings(write_sources=False, rate=3_000, duration=3,
                                 products=catalog.size)
    before = datetime.now(UTC)
    summary = run(settings, bootstrap_servers=broker.bootstrap_servers)
    after = datetime.now(UTC)
    assert summary.delivered == summary.valid
    # Paced: 3,000 events per second of wall time, never ahead of the clock.
    wall = (after - before).total_seconds()
    assert 0.8 * 3_000 * 3 < summary.valid < 1.1 * 3_000 * wall
    received = consume(broker.bootstrap_servers, list(TOPICS), summary.valid)
    times = [datetime.fromisoformat(json.loads(v)["event_time"]) for _, _, _, v in received]
    assert len(times) == summary.valid
    assert before <= min(times)
    assert max(times) <= after


def test_generate_stops_cleanly_on_sigint(broker) -> None:
    env = {**os.environ, "GLOBALMART_GENERATOR_PROGRESS_INTERVAL": "0.5"}
    process = subprocess.Popen(
        [GLOBALMART, "generate", "--rate", "1000", "--bootstrap-servers",
         broker.bootstrap_servers, "--no-database", "--products", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    output = []
    deadline = time.monotonic() + 60
    try:
        for line in process.stdout:  # wait for the first progress line with deliveries
            output.append(line)
            if re.search(r"delivered [1-9]", line) or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(output) + rest
    assert process.returncode == 0, text
    summary = re.search(r"generator summary: stopped on request after [\d.]+ s; ([\d,]+) events"
                        r".*delivered ([\d,]+), failed 0", text)
    assert summary, text
    events, delivered = (int(g.replace(",", "")) for g in summary.groups())
    assert delivered == events > 0
    assert len(consume(broker.bootstrap_servers, list(TOPICS), delivered)) == delivered


def test_generate_explains_missing_source_tables(broker, make_database) -> None:
    url = make_database(migrate=False)
    result = subprocess.run(
        [GLOBALMART, "generate", "--bootstrap-servers", broker.bootstrap_servers,
         "--database-url", url, "--max-events", "10"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "globalmart db upgrade" in result.stderr
