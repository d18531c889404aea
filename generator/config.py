"""Settings of the event generator (``GLOBALMART_GENERATOR_*`` variables, CLI flags override).

The endpoints (Kafka, PostgreSQL) are the platform's (``globalmart.settings``:
``GLOBALMART_KAFKA_BOOTSTRAP_SERVERS``, ``GLOBALMART_DATABASE_URL``), which the command's
``--bootstrap-servers`` / ``--database-url`` override; every other knob is the generator's own
and is declared here once, with its default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from generator.producer import LINGER_MS

Compression = Literal["lz4", "zstd", "snappy", "gzip", "none"]


class GeneratorSettings(BaseSettings):
    """What ``globalmart generate`` produces, how fast, and where to."""

    model_config = SettingsConfigDict(
        env_prefix="GLOBALMART_GENERATOR_", env_file=".env", extra="ignore"
    )

    rate: float = Field(default=500.0, gt=0, description="Live events per second.")
    duration: float | None = Field(
        default=None, ge=0,
        description="Seconds of live production after the history; unset: forever, "
        "0: stop when the history is done.",
    )
    seed: int = Field(
        default=42, description="Seed of every random choice (same seed, same events)."
    )
    history_days: int = Field(
        default=0, ge=0,
        description="Emit this many past days (from midnight UTC N days ago up to now) as "
        "fast as possible before going live.",
    )
    history_rate: float = Field(
        default=40.0, gt=0,
        description="Mean events per simulated second in the history (40 ≈ 100,000 "
        "transactions a day); shaped by hour of day and day of week.",
    )
    history_end: AwareDatetime | None = Field(
        default=None, description="End of the history (default: the start of the run)."
    )
    users: int = Field(default=10_000_000, ge=1, le=1_000_000_000,
                       description="Number of users in the world.")
    products: int = Field(
        default=250_000, ge=100, description="Number of products (in 100 categories)."
    )
    anomaly_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of purchases turned into an injected anomaly."
    )
    malformed_rate: float = Field(
        default=0.0, ge=0, le=1,
        description="Malformed messages sent per valid event (each in addition to it).",
    )
    resend_rate: float = Field(
        default=0.0, ge=0, le=1,
        description="Share of valid events sent a second time, byte for byte.",
    )
    max_events: int | None = Field(
        default=None, ge=1, description="Stop after this many valid events (tests, benchmarks)."
    )
    write_sources: bool = Field(
        default=True,
        description="Write source.customers / products / injected_anomalies (off: Kafka only).",
    )
    compression: Compression = Field(
        default="lz4", description="Kafka compression codec."
    )
    linger_ms: int = Field(
        default=LINGER_MS, ge=0,
        description="Producer linger (batching) in ms: fewer, larger record batches. The embedded "
                    "broker's requests slow down with the number of batches in a partition.")
    progress_interval: float = Field(
        default=5.0, gt=0, description="Seconds between progress lines."
    )

    def history_end_or(self, now: datetime) -> datetime:
        """The end of the history: the configured one, else ``now``."""
        return self.history_end or now
