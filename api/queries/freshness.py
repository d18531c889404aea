"""``data_as_of`` of every table the API reads."""

from __future__ import annotations

from datetime import datetime

from api.queries import Conn, fetch_one

# Real-time tables: the end of the latest window, never beyond when it was written.
_WINDOWS = "SELECT LEAST(max(window_end), max(updated_at)), count(*) FROM public.{table}"
_LATEST = "SELECT max({column}), count(*) FROM public.{table}"
REALTIME: dict[str, str] = {
    "sales_metrics": _WINDOWS.format(table="sales_metrics"),
    "sales_metrics_hourly": _WINDOWS.format(table="sales_metrics_hourly"),
    "order_metrics": _WINDOWS.format(table="order_metrics"),
    "transaction_anomalies": _LATEST.format(column="detected_at", table="transaction_anomalies"),
    "inventory_status": _LATEST.format(column="updated_at", table="inventory_status"),
    "session_metrics": _LATEST.format(column="updated_at", table="session_metrics"),
    "cart_abandonment": _LATEST.format(column="detected_at", table="cart_abandonment"),
    "alerts": _LATEST.format(column="created_at", table="alerts"),
    "pipeline_metrics": _LATEST.format(column="processed_at", table="pipeline_metrics"),
}

# Marts: the end of the latest analysed day (capped at now), rows of the latest snapshot.
_SNAPSHOT = (
    "SELECT LEAST((d + 1)::timestamp AT TIME ZONE 'UTC', now()), "
    "(SELECT count(*) FROM {table} WHERE analysis_date = d) "
    "FROM (SELECT max(analysis_date) AS d FROM {table}) latest"
)
MARTS: dict[str, str] = {
    "marts.customer_rfm_analysis": _SNAPSHOT.format(table="marts.customer_rfm_analysis"),
    "marts.product_performance": _SNAPSHOT.format(table="marts.product_performance"),
    "marts.sales_trends": (
        "SELECT LEAST((max(date) FILTER (WHERE trend_type = 'daily') + 1)"
        "::timestamp AT TIME ZONE 'UTC', now()), count(*) FROM marts.sales_trends"
    ),
}


async def table_state(conn: Conn, table: str) -> tuple[datetime | None, int]:
    """(data_as_of, rows) of a known table."""
    statement = REALTIME.get(table) or MARTS[table]
    values = list((await fetch_one(conn, statement)).values())
    return values[0], int(values[1] or 0)


async def as_of(conn: Conn, table: str) -> datetime | None:
    """data_as_of of a known table."""
    return (await table_state(conn, table))[0]
