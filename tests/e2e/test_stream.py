"""End to end: the generator (fixed seed) into a real broker, the streaming application until
it has caught up, then every figure checked against what was actually produced (read back
from the topics and validated with the contracts) and against the generator's ground truth.
Also a hard kill (SIGKILL) of ``globalmart stream`` mid-stream and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest

from globalmart.contracts import INPUT_TOPICS
from globalmart.embedded import free_port
from globalmart.kafka import end_offsets, ensure_topics
from globalmart.settings import PlatformSettings
from streaming.app import serve
from streaming.config import StreamingSettings
from tests.prometheus import Prometheus
from tests.streaming.e2e import (
    BIN,
    GENERATOR_ARGS,
    assert_raw_layer_exact,
    assert_raw_progress_at_the_end,
    assert_totals_exact,
    generate,
    query,
    read_back,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def assert_prometheus_sees_every_record(port: int | None, bootstrap: str, produced,
                                        directory) -> None:
    """The stream's /metrics, scraped by a real Prometheus server: every record of the input
    topics read once, every rejected one counted."""
    prometheus = Prometheus(directory, {"stream": f"127.0.0.1:{port}"})
    try:
        prometheus.wait(lambda: prometheus.value('up{job="stream"}') == 1, 60, "a scrape")
        records = sum(end_offsets(bootstrap, list(INPUT_TOPICS)).values())
        assert prometheus.value(
            'sum(globalmart_stream_records_total{query="realtime"})') == records
        assert prometheus.value(
            'globalmart_stream_rejected_records_total{query="realtime"}') == len(
                produced.rejected)
        assert prometheus.value(
            'globalmart_stream_batch_seconds_count{query="realtime"}') > 0
    finally:
        prometheus.stop()


def test_generated_events_end_to_end(spark, make_database, broker, tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    generate(bootstrap, db, *GENERATOR_ARGS)
    produced = read_back(bootstrap)
    assert produced.rejected and produced.resends and len(produced.transactions) > 100

    platform = PlatformSettings(database_url=db, kafka_bootstrap_servers=bootstrap,
                                lake_path=str(tmp_path / "lake"))
    settings = StreamingSettings(trigger_interval="1 second", metrics_port=free_port())
    assert serve(spark, settings, platform, threading.Event(), available_now=True) == 0

    assert_totals_exact(db, produced)
    assert_prometheus_sees_every_record(settings.metrics_port, bootstrap, produced, tmp_path)
    assert_raw_progress_at_the_end(db, bootstrap)
    truth = set(query(db, "SELECT transaction_id, anomaly_type FROM source.injected_anomalies"))
    found = set(query(db, "SELECT transaction_id, anomaly_type FROM transaction_anomalies"))
    assert {kind for _, kind in truth} == {"high_value", "unusual_quantity", "rapid_fire",
                                            "total_mismatch"}
    assert truth - found == set(), "recall below 1.0"
    assert found - truth == set(), "precision below 1.0"
    assert_raw_layer_exact(spark, platform.lake, produced)
    assert query(db, "SELECT count(*) FROM session_metrics") != [(0,)]
    assert query(db, "SELECT count(*) FROM inventory_status") != [(0,)]
    newest = max(e.event_time for e in produced.valid.values())
    (reported,), = query(db, "SELECT max(max_event_time) FROM pipeline_metrics "
                             "WHERE query_name = 'raw'")
    assert reported == newest


def test_restart_after_a_hard_kill_keeps_totals_exact(spark, make_database, broker,
                                                      tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, list(INPUT_TOPICS))
    generate(bootstrap, db, *GENERATOR_ARGS)
    env = {**os.environ, "GLOBALMART_HOME": str(tmp_path / "home"),
           "GLOBALMART_DATABASE_URL": db, "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "GLOBALMART_LAKE_PATH": str(tmp_path / "lake"), "GLOBALMART_STREAM_MASTER": "local[2]",
           "GLOBALMART_STREAM_TRIGGER_INTERVAL": "1 second"}
    live = subprocess.Popen([str(BIN), "generate", "--seed", "8", "--rate", "300", "--duration",
                             "25", "--users", "2000", "--products", "500",
                             "--malformed-rate", "0.01", "--resend-rate", "0.01",
                             "--bootstrap-servers", bootstrap, "--database-url", db],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "first-run.log"
    with log.open("w") as out:
        first = subprocess.Popen([str(BIN), "stream"], env=env, start_new_session=True,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: first.poll() is not None or query(
            db, "SELECT count(*) FROM stream_state.batch_commits "
                "WHERE query_name = 'realtime'")[0][0] >= 1,
            240, "a committed transaction batch")
        assert first.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the application and its JVM, mid-stream
        first.wait(30)
    assert live.wait(120) == 0
    produced = read_back(bootstrap)
    second = subprocess.run([str(BIN), "stream", "--available-now"], env=env,
                            capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "caught up" in second.stdout
    assert_totals_exact(db, produced)
    assert_raw_progress_at_the_end(db, bootstrap)
    assert_raw_layer_exact(spark, str(tmp_path / "lake"), produced)


def test_sigterm_stops_cleanly_after_printing_progress(make_database, broker, tmp_path) -> None:
    db = make_database()
    env = {**os.environ, "GLOBALMART_HOME": str(tmp_path / "home"),
           "GLOBALMART_DATABASE_URL": db,
           "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "GLOBALMART_LAKE_PATH": str(tmp_path / "lake"), "GLOBALMART_STREAM_MASTER": "local[2]",
           "GLOBALMART_STREAM_PROGRESS_INTERVAL_SECONDS": "1"}
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        app = subprocess.Popen([str(BIN), "stream"], env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def progress_lines() -> int:
            return sum(line.startswith("stream: ") and "running" not in line
                       for line in log.read_text().splitlines())

        wait_until(lambda: app.poll() is not None or progress_lines() >= 2, 240,
                 "progress lines", poll=0.2)
        assert app.poll() is None, log.read_text()[-3000:]
        app.send_signal(signal.SIGTERM)
        assert app.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait(30)
    text = log.read_text()
    assert "SIGTERM received" in text and "stream: stopped (status 0)" in text
