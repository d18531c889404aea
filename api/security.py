"""API-key check: header ``X-API-Key``, or the dashboard's session cookie; missing → 401,
unknown, revoked or expired → 403.

A browser exchanges a key once for a session (``api.sessions``): a random token in an HttpOnly
cookie, stored as its SHA-256, valid ``session_minutes`` and no longer than its key. Checked keys
and sessions are remembered in memory for ``key_cache_seconds`` (by hash), so cached answers do
not need PostgreSQL; a revoked key stops working within that time.
"""

from __future__ import annotations

import secrets
import time

from psycopg_pool import AsyncConnectionPool

from api.queries import Conn
from globalmart.keys import hash_key

_MAX_KEY_LENGTH = 256
_MAX_REMEMBERED = 10_000

SESSION_COOKIE = "globalmart_session"

_LOOKUP = "SELECT 1 FROM api.api_keys WHERE key_hash = %s AND revoked_at IS NULL"
_SESSION = ("SELECT 1 FROM api.sessions s JOIN api.api_keys k USING (key_hash) "
            "WHERE s.token_hash = %s AND s.expires_at > now() AND k.revoked_at IS NULL")
_OPEN = ("WITH expired AS (DELETE FROM api.sessions WHERE expires_at <= now()) "
         "INSERT INTO api.sessions (token_hash, key_hash, expires_at) "
         "SELECT %(token)s, key_hash, now() + make_interval(mins => %(minutes)s) "
         "FROM api.api_keys WHERE key_hash = %(key)s AND revoked_at IS NULL")
_CLOSE = "DELETE FROM api.sessions WHERE token_hash = %s"


class KeyChecker:
    """Validates keys against ``api.api_keys``, remembering recent answers."""

    def __init__(self, pool: AsyncConnectionPool[Conn], ttl: float) -> None:
        self._pool = pool
        self._ttl = ttl
        self._seen: dict[str, tuple[bool, float]] = {}

    async def is_valid(self, key: str) -> bool:
        """True when ``key`` is an active key."""
        return await self._check(_LOOKUP, key)

    async def is_open(self, token: str) -> bool:
        """True when ``token`` is an unexpired session of an active key."""
        return await self._check(_SESSION, token)

    async def open_session(self, key: str, minutes: int) -> str | None:
        """A new session token for an active ``key`` (None when the key is not), valid
        ``minutes``; expired sessions are deleted on the way."""
        if not key or len(key) > _MAX_KEY_LENGTH:
            return None
        token = secrets.token_urlsafe(32)
        async with self._pool.connection() as conn:
            opened = await conn.execute(_OPEN, {"token": hash_key(token), "minutes": minutes,
                                                "key": hash_key(key)})
        return token if opened.rowcount == 1 else None

    async def close_session(self, token: str) -> None:
        """End a session (logout)."""
        digest = hash_key(token)
        self._seen.pop(digest, None)
        async with self._pool.connection() as conn:
            await conn.execute(_CLOSE, (digest,))

    async def _check(self, query: str, secret: str) -> bool:
        if not secret or len(secret) > _MAX_KEY_LENGTH:
            return False
        digest = hash_key(secret)
        now = time.monotonic()
        seen = self._seen.get(digest)
        if seen and seen[1] > now:
            return seen[0]
        async with self._pool.connection() as conn:
            row = await (await conn.execute(query, (digest,))).fetchone()
        valid = row is not None
        if self._ttl > 0:
            if len(self._seen) >= _MAX_REMEMBERED:
                self._seen.clear()
            self._seen[digest] = (valid, now + self._ttl)
        return valid
