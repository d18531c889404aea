"""API-key check: header ``X-API-Key``; missing → 401, unknown or revoked → 403.

Checked keys are remembered in memory for ``key_cache_seconds`` (by hash), so cached answers
do not need PostgreSQL; a revoked key stops working within that time.
"""

from __future__ import annotations

import time

from psycopg_pool import AsyncConnectionPool

from api.keys import hash_key
from api.queries import Conn

_MAX_KEY_LENGTH = 256
_MAX_REMEMBERED = 10_000

_LOOKUP = "SELECT 1 FROM api.api_keys WHERE key_hash = %s AND revoked_at IS NULL"


class KeyChecker:
    """Validates keys against ``api.api_keys``, remembering recent answers."""

    def __init__(self, pool: AsyncConnectionPool[Conn], ttl: float) -> None:
        self._pool = pool
        self._ttl = ttl
        self._seen: dict[str, tuple[bool, float]] = {}

    async def is_valid(self, key: str) -> bool:
        """True when ``key`` is an active key."""
        if not key or len(key) > _MAX_KEY_LENGTH:
            return False
        digest = hash_key(key)
        now = time.monotonic()
        seen = self._seen.get(digest)
        if seen and seen[1] > now:
            return seen[0]
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_LOOKUP, (digest,))).fetchone()
        valid = row is not None
        if self._ttl > 0:
            if len(self._seen) >= _MAX_REMEMBERED:
                self._seen.clear()
            self._seen[digest] = (valid, now + self._ttl)
        return valid
