"""Settings of the streaming application (``GLOBALMART_STREAM_*``).

The endpoints (PostgreSQL, Kafka, lake) come from :class:`globalmart.settings.PlatformSettings`;
this class holds only the knobs of the Spark application. Every setting is declared here once
with its default; an unknown ``GLOBALMART_STREAM_*`` variable is an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamingSettings(BaseSettings):
    """Knobs of ``globalmart stream``."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_STREAM_", env_file=".env",
                                      extra="forbid")

    master: str = Field(default="local[*]", description="Spark master URL.")
    shuffle_partitions: int = Field(default=2, ge=1, description="spark.sql.shuffle.partitions.")
    trigger_interval: str = Field(default="1 second",
                                  description="Processing-time trigger of every query.")
    watermark: str = Field(default="10 minutes",
                           description="How late an event may arrive (dedup, windows, sessions).")
    starting_offsets: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a query without a checkpoint starts.")
    max_offsets_per_trigger: int = Field(default=50_000, ge=1,
                                         description="Records per topic and micro-batch, at most.")
    source_format: str = Field(
        default="globalmart_kafka",
        description="Spark source format: globalmart_kafka (Python source) or kafka (native jar).")
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

    def checkpoints(self, lake: str) -> str:
        """The checkpoint root in effect."""
        return (self.checkpoint_root or f"{lake.rstrip('/')}/checkpoints").rstrip("/")
