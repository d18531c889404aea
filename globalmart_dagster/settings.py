"""Settings of the Dagster code location, read once from the environment.

Endpoints shared with the other components (PostgreSQL, Kafka, the lake) come from
:class:`globalmart.settings.PlatformSettings`; this class holds what only Dagster uses.
Variables: ``GLOBALMART_SPARK_MASTER``, ``GLOBALMART_MONGODB_URL`` and ``GLOBALMART_DAGSTER_*``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DagsterSettings(BaseSettings):
    """Knobs of the Dagster code location."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_DAGSTER_", env_file=".env",
                                      extra="ignore")

    spark_master: str = Field(
        default="local[2]",
        validation_alias=AliasChoices("GLOBALMART_SPARK_MASTER", "GLOBALMART_DAGSTER_SPARK_MASTER"),
        description="Spark master URL for the warehouse builds.",
    )
    shuffle_partitions: int = Field(default=4, ge=1, description="spark.sql.shuffle.partitions.")
    partitions_start: date = Field(default=date(2025, 1, 1),
                                   description="First daily partition of the warehouse.")
    mart_backend: Literal["postgres", "mongodb"] = Field(
        default="postgres", description="Where the marts are stored.")
    mongodb_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GLOBALMART_MONGODB_URL", "GLOBALMART_DAGSTER_MONGODB_URL"),
        description="MongoDB URL (mongodb://…) of the mongodb mart backend.",
    )
    mongodb_database: str = Field(default="globalmart_dw", description="MongoDB database.")
    day_close_delay_minutes: int = Field(
        default=5, ge=0,
        description="How far the stream's event time must pass midnight before a day is built.")
    sensor_interval_seconds: int = Field(default=60, ge=5,
                                         description="Interval of the complete-days sensor.")
    max_days_per_tick: int = Field(default=7, ge=1,
                                   description="Most day partitions one sensor tick requests.")
