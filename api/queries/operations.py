"""Operations: stock levels, browsing sessions, abandoned carts and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.queries import Conn, fetch_all, fetch_one, page_total
from api.queries.freshness import as_of
from api.schemas import (
    AbandonedCart,
    AlertItem,
    Alerts,
    CartAbandonment,
    InventoryItem,
    InventoryStatus,
    LowStock,
    SessionSummary,
    Severity,
    StockCounts,
    StockStatus,
)
from globalmart.vocabulary import SEVERITIES, SHORT_OF_STOCK, sql_list

_ITEM_COLUMNS = """product_id, product_name, category, current_stock, status, units_sold,
       units_restocked, updated_at"""

_INVENTORY = f"""
SELECT {_ITEM_COLUMNS}, count(*) OVER () AS total
FROM public.inventory_status
WHERE (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY current_stock, product_id
LIMIT %(limit)s OFFSET %(offset)s
"""

_INVENTORY_COUNT = """
SELECT count(*) AS total FROM public.inventory_status
WHERE (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
"""

_STATUS_COUNTS = "SELECT status, count(*) AS n FROM public.inventory_status GROUP BY status"

_LOW_STOCK = f"""
SELECT {_ITEM_COLUMNS} FROM public.inventory_status
WHERE status IN {sql_list(SHORT_OF_STOCK)}
  AND (%(category)s::text IS NULL OR category = %(category)s)
ORDER BY current_stock, product_id LIMIT %(limit)s
"""

_SESSIONS = """
SELECT count(*) AS sessions, count(DISTINCT user_id) AS users,
       count(DISTINCT user_id) FILTER (WHERE session_end >= %(active_since)s) AS active,
       coalesce(avg(duration_seconds), 0) AS avg_duration,
       coalesce(avg(page_views), 0) AS avg_views,
       count(*) FILTER (WHERE converted) AS converted, coalesce(sum(revenue), 0) AS revenue
FROM public.session_metrics WHERE session_end >= %(since)s
"""

_CARTS = """
SELECT session_id, session_start, user_id, last_cart_event_at, items_added, detected_at
FROM public.cart_abandonment WHERE detected_at >= %(since)s
ORDER BY detected_at DESC, session_id, session_start LIMIT %(limit)s
"""

_CART_COUNTS = """
SELECT (SELECT count(*) FROM public.cart_abandonment WHERE detected_at >= %(since)s) AS abandoned,
       (SELECT count(*) FROM public.session_metrics
         WHERE session_end >= %(since)s AND cart_adds > 0) AS with_cart
"""

_ALERTS = """
SELECT alert_id::text AS alert_id, alert_type, severity, entity_id, message, created_at
FROM public.alerts
WHERE created_at >= %(since)s AND (%(severity)s::text IS NULL OR severity = %(severity)s)
ORDER BY created_at DESC, alert_id LIMIT %(limit)s
"""

_ALERT_COUNTS = """
SELECT severity, count(*) AS n FROM public.alerts WHERE created_at >= %(since)s GROUP BY severity
"""


async def inventory(conn: Conn, *, category: str | None, status: StockStatus | None,
                    limit: int, offset: int) -> InventoryStatus:
    """Stock per product (emptiest first) and the number of products per status."""
    params = {"category": category, "status": status, "limit": limit, "offset": offset}
    rows = await fetch_all(conn, _INVENTORY, params)
    total = await page_total(conn, rows, _INVENTORY_COUNT, params)
    counts = {r["status"]: int(r["n"])
              for r in await fetch_all(conn, _STATUS_COUNTS)}
    return InventoryStatus(
        data_as_of=await as_of(conn, "inventory_status"), total=total, limit=limit,
        offset=offset, summary=StockCounts(**counts, total=sum(counts.values())),
        items=[InventoryItem.model_validate(row) for row in rows],
    )


async def low_stock(conn: Conn, *, category: str | None, limit: int) -> LowStock:
    """Products at or below the low-stock threshold, emptiest first."""
    rows = await fetch_all(conn, _LOW_STOCK, {"category": category, "limit": limit})
    return LowStock(data_as_of=await as_of(conn, "inventory_status"),
                    items=[InventoryItem.model_validate(row) for row in rows])


async def sessions(conn: Conn, *, hours: int, active_minutes: int) -> SessionSummary:
    """Sessions with activity in the last ``hours`` hours."""
    now = datetime.now(UTC)
    params = {"since": now - timedelta(hours=hours),
              "active_since": now - timedelta(minutes=active_minutes)}
    row = await fetch_one(conn, _SESSIONS, params)
    count = int(row["sessions"])
    return SessionSummary(
        data_as_of=await as_of(conn, "session_metrics"), hours=hours, sessions=count,
        unique_users=int(row["users"]), active_users=int(row["active"]),
        avg_duration_seconds=round(float(row["avg_duration"]), 1),
        avg_page_views=round(float(row["avg_views"]), 2),
        conversion_rate=round(int(row["converted"]) / count, 4) if count else 0.0,
        revenue=float(row["revenue"]),
    )


async def cart_abandonment(conn: Conn, *, hours: int, limit: int) -> CartAbandonment:
    """Carts abandoned in the last ``hours`` hours and the abandonment rate."""
    params = {"since": datetime.now(UTC) - timedelta(hours=hours), "limit": limit}
    counts = await fetch_one(conn, _CART_COUNTS, params)
    rows = await fetch_all(conn, _CARTS, params)
    abandoned, with_cart = int(counts["abandoned"]), int(counts["with_cart"])
    return CartAbandonment(
        data_as_of=await as_of(conn, "cart_abandonment"), hours=hours,
        abandoned_carts=abandoned, sessions_with_cart=with_cart,
        abandonment_rate=round(min(abandoned / with_cart, 1.0), 4) if with_cart else 0.0,
        items=[AbandonedCart.model_validate(row) for row in rows],
    )


async def alerts(conn: Conn, *, hours: int, severity: Severity | None,
                 limit: int) -> Alerts:
    """Alerts of the last ``hours`` hours, newest first, and their count per severity."""
    params = {"since": datetime.now(UTC) - timedelta(hours=hours), "severity": severity,
              "limit": limit}
    rows = await fetch_all(conn, _ALERTS, params)
    counts = {r["severity"]: int(r["n"])
              for r in await fetch_all(conn, _ALERT_COUNTS, params)}
    return Alerts(
        data_as_of=await as_of(conn, "alerts"), hours=hours,
        counts={s: counts.get(s, 0) for s in SEVERITIES},
        items=[AlertItem.model_validate(row) for row in rows],
    )
