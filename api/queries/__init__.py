"""SQL of the API, one module per resource. Functions take an open async connection (rows as
dicts) and validated parameters, and return response models. Identifiers are never built from
caller input: sort fields and filters map to fixed SQL."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]
Query = str | sql.SQL | sql.Composed


async def fetch_one(conn: Conn, query: Query, params: Any = None) -> DictRow:
    """The single row of a query that always returns one (aggregates)."""
    row = await (await conn.execute(query, params)).fetchone()
    if row is None:
        raise LookupError("the query returned no row")
    return row


async def fetch_all(conn: Conn, query: Query, params: Any = None) -> list[DictRow]:
    """Every row of a query."""
    return await (await conn.execute(query, params)).fetchall()


async def page_total(conn: Conn, rows: list[DictRow], count_query: Query, params: Any) -> int:
    """Rows matching a paged query: from its ``count(*) OVER ()`` column, or, past the last
    page (no row to carry it), from ``count_query``."""
    if rows:
        return int(rows[0]["total"])
    return int((await fetch_one(conn, count_query, params))["total"])
