"""Platform settings: the endpoints every component shares, read from ``GLOBALMART_*`` variables.

Each component (generator, streaming, Dagster, API) has its own settings class for its own
knobs; the endpoints live here once. An endpoint left unset means "the embedded runtime's":
``globalmart up`` then starts that service itself, and every other command connects to it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlatformSettings(BaseSettings):
    """Where the shared services are. All values come from the environment (or ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".globalmart"),
        description="Data directory of the embedded runtime (PostgreSQL data, lake, logs).",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: the embedded server on 127.0.0.1:embedded_pg_port.",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers. Unset: the embedded broker on embedded_kafka_port.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL (API cache).")
    lake_path: str | None = Field(
        default=None,
        description="Root of the Parquet lake: a path or a URL (file:///abs/path, s3://…) that "
                    "every process and Spark executor reaches. Unset: <home>/lake."
    )
    embedded_pg_port: int = Field(default=5433, description="Port of the embedded PostgreSQL.")
    embedded_kafka_port: int = Field(default=9092, description="Port of the embedded broker.")
    embedded_kafka_controller_port: int = Field(
        default=9093, description="Port of the embedded broker's KRaft controller listener.")
    embedded_kafka_retention_hours: int = Field(
        default=168, ge=1, description="How long the embedded broker keeps records (7 days).")
    embedded_kafka_retention_bytes: int = Field(
        default=1 << 30, ge=1 << 20,
        description="Bytes the embedded broker keeps per partition at most (older segments are "
                    "deleted first; 1 GiB: about 20 GiB for all topics).")
    jars_dir: Path | None = Field(
        default=None,
        description="Folder of the fetched jars (kafka/, spark-kafka/). Unset: jars/lib of the "
                    "source tree, where `make install` puts them.")
    embedded_database: str = Field(default="globalmart", description="Embedded database name.")

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def db_url(self) -> str:
        """The PostgreSQL URL in effect (configured, or the embedded server's)."""
        if self.database_url:
            return self.database_url
        return f"postgresql://postgres@127.0.0.1:{self.embedded_pg_port}/{self.embedded_database}"

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap servers in effect (configured, or the embedded broker's)."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.embedded_kafka_port}"

    @property
    def lake(self) -> str:
        """The lake root in effect: the configured URL, or an absolute path (a relative one is
        taken from this process's working directory, once: Spark's executors and the other
        components each have their own)."""
        from globalmart.lake import absolute

        return absolute(self.lake_path) if self.lake_path else str((self.home / "lake").resolve())
