"""When each mart was last materialized, read from the Dagster instance's PostgreSQL storage.

Dagster records the latest materialization of every asset in its ``asset_keys`` table (event
log storage). Reading it is one small query, remembered for ``ttl`` seconds. Without a Dagster
database configured, or when it cannot be read, callers fall back to the mart's own latest
analysed day.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import psycopg

log = logging.getLogger(__name__)

_QUERY = ("SELECT asset_key, last_materialization_timestamp FROM asset_keys "
          "WHERE asset_key = ANY(%s)")


def asset_key(table: str) -> str:
    """The serialised Dagster asset key of a mart table (``marts.x`` → ``["marts", "x"]``)."""
    return json.dumps(table.split("."))


class Materializations:
    """Last materialization time per mart table, from Dagster's storage."""

    def __init__(self, url: str | None, tables: list[str], ttl: float = 30.0) -> None:
        self._url = url
        self._tables = tables
        self._ttl = ttl
        self._times: dict[str, datetime] = {}
        self._read_at = -float("inf")

    async def _refresh(self, url: str) -> None:
        self._read_at = time.monotonic()
        keys = {asset_key(table): table for table in self._tables}
        try:
            async with await psycopg.AsyncConnection.connect(
                    url, connect_timeout=2, autocommit=True) as conn:
                rows = await (await conn.execute(_QUERY, (list(keys),))).fetchall()
        except psycopg.Error as exc:
            log.warning("cannot read Dagster materializations: %s", exc)
            self._times = {}
            return
        self._times = {keys[key]: stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
                       for key, stamp in rows if stamp is not None}

    async def last(self, table: str) -> datetime | None:
        """When ``table`` was last materialized, or None when unknown."""
        if self._url is None:
            return None
        if time.monotonic() - self._read_at >= self._ttl:
            await self._refresh(self._url)
        return self._times.get(table)
