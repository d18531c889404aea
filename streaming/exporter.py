"""Prometheus metrics of the streaming application, served at ``http://127.0.0.1:<port>/metrics``
(``GLOBALMART_STREAM_METRICS_PORT``; unset: not served). Updated from every query progress
report, beside the ``pipeline_metrics`` rows (:mod:`streaming.metrics`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class StreamMetrics:
    """Events per topic, lag, batch durations, late and rejected records, per query."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("globalmart_stream_records", "Kafka records read.",
                              ["query", "topic"], registry=self.registry)
        self.lag = Gauge("globalmart_stream_lag_records",
                         "Records the latest batch left behind the log end it planned against.",
                         ["query", "topic"], registry=self.registry)
        self.event_rate = Gauge("globalmart_stream_records_per_second",
                                "Records processed per second in the latest batch.",
                                ["query", "topic"], registry=self.registry)
        self.duration = Histogram("globalmart_stream_batch_seconds", "Micro-batch durations.",
                                  ["query"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.rejected = Counter("globalmart_stream_rejected_records",
                                "Records dead-lettered.", ["query"], registry=self.registry)
        self.late = Counter("globalmart_stream_late_events",
                            "Events left out of the windows as later than the watermark.",
                            ["query"], registry=self.registry)

    def observe(self, query: str, rows: Sequence[Mapping[str, Any]], rejected: int,
                late: int) -> None:
        """Add one progress report's ``pipeline_metrics`` rows and its sink's counts."""
        for row in rows:
            topic = str(row["topic"])
            self.events.labels(query, topic).inc(int(row["input_rows"]))
            self.lag.labels(query, topic).set(int(row["lag_records"]))
            self.event_rate.labels(query, topic).set(float(row["processed_rows_per_second"]))
        if rows:
            self.duration.labels(query).observe(int(rows[0]["batch_duration_ms"]) / 1000)
        self.rejected.labels(query).inc(rejected)
        self.late.labels(query).inc(late)

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on 127.0.0.1:``port`` from a daemon thread."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
