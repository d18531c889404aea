"""Settings of the streaming application (``GLOBALMART_STREAM_*``).

The endpoints (PostgreSQL, Kafka, lake) come from :class:`globalmart.settings.PlatformSettings`;
this class holds only the knobs of the Spark application. Every setting is declared here once
with its default; an unknown ``GLOBALMART_STREAM_*`` variable (in the environment or
``.env``) is an error, other variables are left to their owners.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "GLOBALMART_STREAM_"


class StreamingSettings(BaseSettings):
    """Knobs of ``globalmart stream``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    master: str = Field(default="local[*]", description="Spark master URL.")
    trigger_interval: str = Field(default="1 second",
                                  description="Processing-time trigger of the realtime query.")
    raw_flush_interval: str = Field(
        default="10 seconds",
        description="How often the raw-layer rows the realtime query buffered are written to "
                    "Parquet (fewer, larger files; the realtime tables do not wait for it).")
    vacuum_interval: str = Field(
        default="10 seconds",
        description="How often the application vacuums the tables the realtime query rewrites "
                    "every batch (sessions, recent transactions, counters), whose dead rows "
                    "would otherwise pile up where autovacuum is off or lags (every 6th time "
                    "it also analyses them); 0 seconds: never.")
    watermark: str = Field(default="10 minutes",
                           description="How late an event may arrive (dedup, windows, sessions).")
    late_window: str = Field(
        default="0 seconds",
        description="Events up to this much behind the watermark are still added into their "
                    "past windows of sales_metrics and order_metrics, and counted as accepted "
                    "in the day ledger, instead of being left out of the real-time tables. "
                    "0 seconds (default): off. Cost: a window already read (dashboard, API, "
                    "Grafana alert) changes afterwards; sessions and the anomaly rules still "
                    "see on-time events only. Stock, the ledger and the raw layer count every "
                    "late event either way.")
    validate_on: Literal["auto", "executors", "driver"] = Field(
        default="auto",
        description="Where the records are validated against the contracts: `executors` (in "
                    "the Spark tasks that read them; the driver receives typed batches) or "
                    "`driver` (after the collect). Each costs the same per event, but the "
                    "executors' Python workers add ~150 ms to every batch, which only pays "
                    "off with executors of their own: `auto` (default) is `executors` on a "
                    "cluster master and `driver` on `local[...]`.")
    starting_offsets: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a query without a checkpoint starts.")
    max_offsets_per_trigger: int = Field(
        default=200_000, ge=1,
        description="Records per micro-batch at most, over all topics (Spark's Kafka source "
                    "splits it over the partitions by their lag).")
    read_tasks: int = Field(
        default=2, ge=0,
        description="Spark tasks that read a micro-batch's Kafka partitions, each reading "
                    "several in turn (each task has a fixed cost; the number of cores is a good "
                    "value); 0: one task per Kafka partition.")
    fail_on_data_loss: bool = Field(
        default=False,
        description="Stop the query when offsets it still needs are gone from Kafka (deleted by "
                    "retention, a topic recreated). Off: Spark logs a warning and the query "
                    "goes on from the earliest offset still held, so a lagging stream is never "
                    "stopped for good; the records lost are the ones retention removed.")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Serve Prometheus metrics (records per topic, lag, batch durations, late "
                    "and rejected records) on 127.0.0.1:<port>/metrics; unset: not served "
                    "(`globalmart up` sets GLOBALMART_STREAM_METRICS_PORT, 9108).")
    checkpoint_root: str | None = Field(
        default=None, description="Checkpoint directory root. Unset: <lake>/checkpoints.")
    critical_anomaly_score: float = Field(
        default=0.8, ge=0, le=1, description="Anomalies scoring at least this raise an alert.")
    alert_webhook_url: str | None = Field(
        default=None, description="POST every alert as JSON to this URL (unset: log only).")
    max_query_restarts: int = Field(
        default=3, ge=0, description="How often a failed query is restarted before giving up.")
    progress_interval_seconds: float = Field(default=10.0, gt=0,
                                             description="How often a progress line is printed.")

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> StreamingSettings:
        """Refuse a GLOBALMART_STREAM_* variable (environment or .env) that is no setting: a
        misspelt knob must not be silently ignored."""
        names = set(os.environ)
        if Path(".env").is_file():
            names |= set(dotenv_values(".env"))
        known = {PREFIX + field.upper() for field in type(self).model_fields}
        unknown = sorted(n for n in names if n.upper().startswith(PREFIX)
                         and n.upper() not in known)
        if unknown:
            raise ValueError(f"unknown streaming settings {unknown}; known: {sorted(known)}")
        return self

    def validates_on_executors(self) -> bool:
        """Whether the executors validate the records (see ``validate_on``)."""
        if self.validate_on == "auto":
            return not self.master.startswith("local")
        return self.validate_on == "executors"

    def checkpoints(self, lake: str) -> str:
        """The checkpoint root in effect (a relative path made absolute, as the lake's)."""
        from globalmart.lake import absolute

        return absolute(self.checkpoint_root or f"{lake.rstrip('/')}/checkpoints").rstrip("/")
