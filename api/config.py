"""Settings of the REST API: the platform's endpoints plus the API's own knobs.

Endpoints (PostgreSQL, Redis, Kafka) come from :class:`globalmart.settings.PlatformSettings`
(``GLOBALMART_DATABASE_URL``, ``GLOBALMART_REDIS_URL``, ``GLOBALMART_KAFKA_BOOTSTRAP_SERVERS``);
everything else is read from ``GLOBALMART_API_*`` variables.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from globalmart.settings import PlatformSettings


class ApiSettings(BaseSettings):
    """Configuration of the API process. All values come from the environment (or ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_API_", env_file=".env",
                                      extra="ignore")

    platform: PlatformSettings = Field(
        default_factory=PlatformSettings,
        description="The shared endpoints: PostgreSQL, Redis and Kafka (GLOBALMART_* variables).",
    )
    host: str = Field(default="127.0.0.1", description="Interface `globalmart api` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `globalmart api` binds.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated (empty: same origin only).",
    )
    cache_ttl_seconds: float = Field(default=5.0, ge=0, description="TTL of real-time answers.")
    mart_cache_ttl_seconds: float = Field(default=60.0, ge=0, description="TTL of mart answers.")
    local_cache_seconds: float = Field(
        default=1.0, ge=0,
        description="Each process also keeps answers this long in memory (0: Redis only).",
    )
    cache_prefix: str = Field(default="globalmart:api:", description="Prefix of the cache keys.")
    redis_timeout_seconds: float = Field(
        default=0.25, gt=0, description="Socket timeout of cache calls: a dead Redis costs this."
    )
    redis_retry_seconds: float = Field(
        default=5.0, ge=0, description="After a Redis failure, skip the cache for this long."
    )
    db_pool_min: int = Field(default=1, ge=0, description="Connections kept open.")
    db_pool_max: int = Field(default=8, ge=1, description="Most connections to PostgreSQL.")
    db_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Wait for a connection before answering 503."
    )
    statement_timeout_ms: int = Field(
        default=5000, ge=100, description="PostgreSQL cancels a query running longer (→ 503)."
    )
    key_cache_seconds: float = Field(
        default=10.0, ge=0,
        description="How long a checked API key is trusted before PostgreSQL is asked again "
        "(a revoked key stops working within this time).",
    )
    session_minutes: int = Field(
        default=60, ge=1, le=1440,
        description="Lifetime of the dashboard's session cookie, for which the browser "
        "exchanged its API key on first load; afterwards the page asks for a key again.",
    )
    active_user_minutes: int = Field(
        default=30, ge=1, le=1440,
        description="A user is active when a session of theirs saw activity this recently.",
    )
    dagster_database_url: str | None = Field(
        default=None,
        description="PostgreSQL storage of the Dagster instance: when set, a mart's data_as_of "
        "is its last materialization; otherwise the end of its latest analysed day.",
    )
    access_log: bool = Field(default=False, description="Log every request (uvicorn).")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def database_url(self) -> str:
        """PostgreSQL the API reads."""
        return self.platform.db_url

    @property
    def redis_url(self) -> str:
        """Redis of the response cache."""
        return self.platform.redis_url

    @property
    def bootstrap_servers(self) -> str:
        """Kafka broker that /ready checks."""
        return self.platform.bootstrap_servers
