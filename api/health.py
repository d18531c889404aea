"""Readiness checks of the API's dependencies: PostgreSQL, Redis and the Kafka broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from confluent_kafka.admin import AdminClient
from psycopg_pool import AsyncConnectionPool

from api.cache import ResponseCache
from api.queries import Conn
from api.schemas import Check

CHECK_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


async def _timed(probe: Callable[[], Awaitable[object]]) -> Check:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S + 0.5)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        error = str(exc) or type(exc).__name__
        return Check(ok=False, error=error[:300], latency_ms=_ms(started))
    return Check(ok=True, latency_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class Readiness:
    """Probes each dependency."""

    def __init__(self, pool: AsyncConnectionPool[Conn], cache: ResponseCache,
                 bootstrap_servers: str) -> None:
        self._pool = pool
        self._cache = cache
        self._bootstrap = bootstrap_servers

    async def _postgres(self) -> None:
        async with self._pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")

    def _kafka_metadata(self) -> None:
        # A client per probe: an idle one would keep reconnecting to a dead broker.
        config: dict = {"bootstrap.servers": self._bootstrap,
                        "socket.connection.setup.timeout.ms": 2000,
                        "reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 1000,
                        "logger": log}
        admin = AdminClient(config)
        admin.list_topics(timeout=CHECK_TIMEOUT_S)

    async def _kafka(self) -> None:
        await asyncio.to_thread(self._kafka_metadata)

    async def check(self) -> dict[str, Check]:
        """The state of every dependency, probed concurrently."""
        results = await asyncio.gather(_timed(self._postgres), _timed(self._cache.ping),
                                       _timed(self._kafka))
        return dict(zip(("postgres", "redis", "kafka"), results, strict=True))
