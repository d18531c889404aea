"""Pipeline-metric rows from Spark progress reports, and the webhook notifier over real HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest

from globalmart.contracts import Alert
from streaming.app import CheckpointError, check_checkpoint, parse_duration
from streaming.metrics import progress_rows
from streaming.notifier import LogNotifier, WebhookNotifier, build_notifier
from streaming.sinks.batch import BatchResult

PROGRESS = {
    "name": "sessions", "batchId": 7, "timestamp": "2026-03-01T12:00:05.000Z",
    "numInputRows": 300, "inputRowsPerSecond": 150.0, "processedRowsPerSecond": 600.0,
    "durationMs": {"triggerExecution": 500},
    "sources": [{
        "startOffset": json.dumps({"product_views": {"0": 100, "1": 100},
                                   "transactions": {"0": 10}}),
        "endOffset": json.dumps({"product_views": {"0": 200, "1": 250},
                                 "transactions": {"0": 60}}),
        "latestOffset": json.dumps({"product_views": {"0": 230, "1": 250},
                                    "transactions": {"0": 61}}),
        "numInputRows": 300,
    }],
    "sink": {"numOutputRows": -1},
}
NEWEST = datetime(2026, 3, 1, 11, 59, 59, 123000, tzinfo=UTC)


def test_progress_rows_split_by_topic_with_lag_against_the_planned_log_ends() -> None:
    rows = {r["topic"]: r for r in progress_rows(PROGRESS,
                                                   BatchResult(31, {"product_views": NEWEST}))}
    assert set(rows) == {"product_views", "transactions"}
    views, sales = rows["product_views"], rows["transactions"]
    assert (views["input_rows"], sales["input_rows"]) == (250, 50)
    assert (views["lag_records"], sales["lag_records"]) == (30, 1)
    assert views["rows_written"] + sales["rows_written"] == 31
    assert abs(views["processed_rows_per_second"] - 500.0) < 1e-9
    assert views["batch_duration_ms"] == 500 and views["batch_id"] == 7
    assert views["max_event_time"] == NEWEST and sales["max_event_time"] is None
    assert views["query_name"] == "sessions"


def test_a_batch_the_sink_did_not_record_writes_nothing() -> None:
    rows = progress_rows(PROGRESS, None)
    assert sum(r["rows_written"] for r in rows) == 0
    assert all(r["max_event_time"] is None for r in rows)


def test_durations() -> None:
    assert parse_duration("10 minutes").total_seconds() == 600
    assert parse_duration("1 second").total_seconds() == 1


def _alert() -> Alert:
    return Alert(alert_id=uuid.uuid4(), alert_type="stock_low", severity="warning",
                 entity_id="p1", message="stock 9 is low", created_at=datetime.now(UTC))


def test_webhook_notifier_posts_alerts_as_json() -> None:
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        notifier = build_notifier(f"http://127.0.0.1:{server.server_port}/hook")
        assert isinstance(notifier, WebhookNotifier)
        alert = _alert()
        notifier.notify([alert])
    finally:
        server.shutdown()
        server.server_close()
    assert received == [[alert.model_dump(mode="json")]]


def test_default_notifier_logs_and_a_dead_webhook_does_not_raise(caplog) -> None:
    assert isinstance(build_notifier(None), LogNotifier)
    build_notifier(None).notify([_alert()])
    assert "stock 9 is low" in caplog.text
    WebhookNotifier("http://127.0.0.1:9/none", timeout=0.5).notify([_alert()])
    assert "could not deliver 1 alerts" in caplog.text


def test_a_query_without_its_checkpoint_is_refused(make_database, tmp_path) -> None:
    db, lake, checkpoint = make_database(), str(tmp_path / "lake"), str(tmp_path / "cp")
    check_checkpoint(db, lake, "realtime", checkpoint)  # nothing written yet: fine
    day = tmp_path / "lake" / "raw" / "transactions" / "event_date=2026-03-01"
    day.mkdir(parents=True)
    (day / "part-0000000000-0000000003.parquet").write_bytes(b"")
    with pytest.raises(CheckpointError, match="raw layer"):
        check_checkpoint(db, lake, "realtime", checkpoint)
    (day / "part-0000000000-0000000003.parquet").unlink()
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO stream_state.batch_commits (query_name, batch_id) "
                     "VALUES ('realtime', 41)")
    with pytest.raises(CheckpointError, match="batches up to 41"):
        check_checkpoint(db, lake, "realtime", checkpoint)
    (tmp_path / "cp" / "offsets").mkdir(parents=True)
    check_checkpoint(db, lake, "realtime", checkpoint)
    (day.parent / "_spark_metadata").mkdir()
    with pytest.raises(CheckpointError, match="_spark_metadata"):
        check_checkpoint(db, lake, "realtime", checkpoint)
