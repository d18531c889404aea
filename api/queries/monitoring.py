"""Monitoring: anomalies, the executive dashboard figures and the pipeline's health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.materializations import Materializations
from api.queries import Conn, fetch_all, fetch_one, page_total
from api.queries.freshness import MARTS, REALTIME, as_of, table_state
from api.queries.periods import today_start
from api.schemas import (
    NONE_YET,
    AnomaliesPage,
    DashboardMetrics,
    PipelineHealth,
    QueryHealth,
    TableFreshness,
    TopicIngestion,
    TransactionAnomaly,
)
from globalmart.vocabulary import SHORT_OF_STOCK, sql_list

_ANOMALIES = """
SELECT transaction_id, user_id, amount, anomaly_score, anomaly_type, detected_at, description,
       count(*) OVER () AS total
FROM public.transaction_anomalies WHERE detected_at >= %(since)s
ORDER BY detected_at DESC, transaction_id, anomaly_type LIMIT %(limit)s OFFSET %(offset)s
"""

_ANOMALIES_COUNT = """
SELECT count(*) AS total FROM public.transaction_anomalies WHERE detected_at >= %(since)s
"""

# One round trip for every executive figure.
_DASHBOARD = f"""
WITH orders AS (
    SELECT coalesce(sum(order_count), 0) AS orders, coalesce(sum(revenue), 0) AS revenue
    FROM public.order_metrics WHERE window_start >= %(today)s
), top_category AS (
    SELECT category FROM public.sales_metrics WHERE window_start >= %(today)s
    GROUP BY category ORDER BY sum(total_amount) DESC, category LIMIT 1
), top_country AS (
    SELECT country FROM public.order_metrics WHERE window_start >= %(today)s
    GROUP BY country ORDER BY sum(revenue) DESC, country LIMIT 1
)
SELECT orders.orders, orders.revenue,
       (SELECT category FROM top_category) AS top_category,
       (SELECT country FROM top_country) AS top_country,
       (SELECT count(DISTINCT user_id) FROM public.session_metrics
         WHERE session_end >= %(active_since)s) AS active_users,
       (SELECT count(DISTINCT user_id) FROM public.session_metrics
         WHERE session_end >= %(today)s) AS active_users_today,
       (SELECT count(*) FROM public.transaction_anomalies
         WHERE detected_at >= %(today)s) AS anomalies,
       (SELECT count(*) FROM public.alerts
         WHERE created_at >= %(today)s AND severity = 'critical') AS critical_alerts,
       (SELECT count(*) FROM public.inventory_status
         WHERE status IN {sql_list(SHORT_OF_STOCK)}) AS low_stock,
       (SELECT LEAST(max(window_end), max(updated_at)) FROM public.order_metrics) AS data_as_of
FROM orders
"""

# Per topic: the busiest query reading it (several queries may read one topic).
_TOPICS = """
WITH per_query AS (
    SELECT topic, query_name, sum(input_rows) AS records, max(processed_at) AS last_batch_at
    FROM public.pipeline_metrics WHERE processed_at >= %(since)s AND topic <> '*'
    GROUP BY topic, query_name
), latest AS (
    SELECT DISTINCT ON (topic, query_name) topic, query_name, lag_records
    FROM public.pipeline_metrics WHERE processed_at >= %(since)s AND topic <> '*'
    ORDER BY topic, query_name, processed_at DESC, batch_id DESC
)
SELECT p.topic, max(p.records) AS records, max(l.lag_records) AS lag_records,
       max(p.last_batch_at) AS last_batch_at
FROM per_query p JOIN latest l USING (topic, query_name)
GROUP BY p.topic ORDER BY p.topic
"""

_QUERIES = """
SELECT query_name, count(DISTINCT batch_id) AS batches, max(batch_id) AS last_batch_id,
       max(processed_at) AS last_batch_at, avg(batch_duration_ms) AS avg_ms,
       max(batch_duration_ms) AS max_ms
FROM (SELECT DISTINCT ON (query_name, batch_id) query_name, batch_id, processed_at,
             batch_duration_ms
      FROM public.pipeline_metrics WHERE processed_at >= %(since)s) batches
GROUP BY query_name ORDER BY query_name
"""

_DEAD_LETTERS = "SELECT count(*) AS n FROM public.dead_letter WHERE rejected_at >= %(since)s"


async def anomalies(conn: Conn, hours: int, limit: int, offset: int) -> AnomaliesPage:
    """Anomalies detected in the last ``hours`` hours."""
    params = {"since": datetime.now(UTC) - timedelta(hours=hours), "limit": limit,
              "offset": offset}
    rows = await fetch_all(conn, _ANOMALIES, params)
    return AnomaliesPage(
        data_as_of=await as_of(conn, "transaction_anomalies"), hours=hours,
        total=await page_total(conn, rows, _ANOMALIES_COUNT, params), limit=limit,
        offset=offset, items=[TransactionAnomaly.model_validate(row) for row in rows],
    )


async def dashboard(conn: Conn, active_minutes: int) -> DashboardMetrics:
    """Executive figures of the current UTC day, with users active in the last minutes."""
    now = datetime.now(UTC)
    params = {"today": today_start(now), "active_since": now - timedelta(minutes=active_minutes)}
    row = await fetch_one(conn, _DASHBOARD, params)
    orders, revenue = int(row["orders"]), float(row["revenue"])
    return DashboardMetrics(
        data_as_of=row["data_as_of"],
        total_revenue_today=revenue,
        total_transactions_today=orders,
        avg_transaction_value=round(revenue / orders, 2) if orders else 0.0,
        active_users=int(row["active_users"]),
        active_window_minutes=active_minutes,
        active_users_today=int(row["active_users_today"]),
        top_category=row["top_category"] or NONE_YET,
        top_country=row["top_country"] or NONE_YET,
        anomalies_count=int(row["anomalies"]),
        critical_alerts_today=int(row["critical_alerts"]),
        low_stock_products=int(row["low_stock"]),
    )


async def pipeline(conn: Conn, window_minutes: int,
                   materializations: Materializations) -> PipelineHealth:
    """Ingestion per topic, streaming query batches and freshness of every table (a mart's
    is its last Dagster materialization when known)."""
    now = datetime.now(UTC)
    params = {"since": now - timedelta(minutes=window_minutes)}
    seconds = window_minutes * 60.0
    topics = [
        TopicIngestion(topic=r["topic"], records=int(r["records"]),
                       records_per_second=round(int(r["records"]) / seconds, 3),
                       lag_records=int(r["lag_records"]), last_batch_at=r["last_batch_at"])
        for r in await fetch_all(conn, _TOPICS, params)
    ]
    queries = [
        QueryHealth(query_name=r["query_name"], batches=int(r["batches"]),
                    last_batch_id=int(r["last_batch_id"]), last_batch_at=r["last_batch_at"],
                    avg_batch_duration_ms=round(float(r["avg_ms"]), 1),
                    max_batch_duration_ms=int(r["max_ms"]))
        for r in await fetch_all(conn, _QUERIES, params)
    ]
    tables = []
    for kind, names in (("realtime", REALTIME), ("mart", MARTS)):
        for name in names:
            fresh, rows = await table_state(conn, name)
            if kind == "mart":
                fresh = await materializations.last(name) or fresh
            tables.append(TableFreshness(
                table=name, kind=kind, data_as_of=fresh, rows=rows,  # type: ignore[arg-type]
                age_seconds=round((now - fresh).total_seconds(), 1) if fresh else None,
            ))
    dead = await fetch_one(conn, _DEAD_LETTERS, params)
    return PipelineHealth(
        data_as_of=await as_of(conn, "pipeline_metrics"), window_minutes=window_minutes,
        topics=topics, queries=queries, tables=tables, dead_letters_in_window=int(dead["n"]),
    )
