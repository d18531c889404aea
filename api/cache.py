"""Response cache in Redis that never stands in the way.

Keys are prefix + path + the request's validated parameters in sorted order. Every Redis
call has a short socket timeout; after a failure the cache is skipped for ``retry_seconds`` so a
dead Redis costs at most one short timeout per back-off period, and the API keeps answering
from PostgreSQL.

In front of Redis, each process keeps what it read or wrote for ``local_seconds`` (about a
second): a hot dashboard query is then answered without a Redis round trip, and the answers
are at most that much older than Redis's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from urllib.parse import urlencode

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_LOCAL_ENTRIES = 1024


def query_string(params: Mapping[str, object]) -> str:
    """Validated parameters as a query string in a canonical order (those None left out)."""
    return urlencode(sorted((name, str(value)) for name, value in params.items()
                            if value is not None))


def cache_key(prefix: str, path: str, params: Mapping[str, object]) -> str:
    """The cache key of a request: its path plus its validated parameters (a parameter the
    route does not know never makes a new key)."""
    query = query_string(params)
    return f"{prefix}{path}?{query}" if query else f"{prefix}{path}"


class ResponseCache:
    """Get and set serialised responses; failures are logged once and then skipped."""

    def __init__(self, url: str, prefix: str, timeout: float, retry_seconds: float,
                 local_seconds: float = 0.0) -> None:
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self._local_seconds = local_seconds
        self._local: dict[str, tuple[float, bytes]] = {}
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, health_check_interval=0,
        )
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while backing off after a failure."""
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("Redis cache unavailable (%s); answering from PostgreSQL for %.0f s",
                        exc, self.retry_seconds)
        self._down_until = time.monotonic() + self.retry_seconds

    def _remember(self, key: str, body: bytes, ttl: float) -> None:
        seconds = min(self._local_seconds, ttl)
        if seconds <= 0:
            return
        if len(self._local) >= _LOCAL_ENTRIES:
            self._local.clear()
        self._local[key] = (time.monotonic() + seconds, body)

    async def get(self, key: str) -> bytes | None:
        """The cached body, or None on a miss or when Redis is down."""
        local = self._local.get(key)
        if local is not None and local[0] > time.monotonic():
            return local[1]
        if not self.available:
            return None
        try:
            value = await self._client.get(key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if not isinstance(value, bytes):
            return None
        self._remember(key, value, self._local_seconds)
        return value

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store a body for ``ttl`` seconds (no-op when ttl is 0; local only when Redis is
        down)."""
        if ttl <= 0:
            return
        self._remember(key, body, ttl)
        if not self.available:
            return
        try:
            await self._client.set(key, body, px=int(ttl * 1000))
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def ping(self) -> None:
        """Raise when Redis does not answer (used by /ready, ignores the back-off)."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
