"""Sales: one-minute windows by category and country (``sales_metrics``) and order-level
windows by country (``order_metrics``, where each transaction counts once)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from api.queries import Conn, fetch_all, fetch_one, page_total
from api.queries.freshness import as_of
from api.queries.periods import period_start
from api.schemas import (
    CategorySales,
    CountrySales,
    LateTransactions,
    MinuteSales,
    Period,
    SalesByCategory,
    SalesByCountry,
    SalesMetric,
    SalesMetricsPage,
    SalesSummary,
    SalesSummaryMetrics,
    SalesTimeline,
)
from globalmart.geo import locate

_METRICS = """
SELECT window_start, window_end, category, country, total_amount, transaction_count,
       avg_transaction_value, units_sold, count(*) OVER () AS total
FROM public.sales_metrics
WHERE (%(start)s::timestamptz IS NULL OR window_start >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR window_start < %(end)s)
  AND (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(country)s::text IS NULL OR country = %(country)s)
ORDER BY window_start DESC, category, country
LIMIT %(limit)s OFFSET %(offset)s
"""

_COUNT = """
SELECT count(*) AS total FROM public.sales_metrics
WHERE (%(start)s::timestamptz IS NULL OR window_start >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR window_start < %(end)s)
  AND (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(country)s::text IS NULL OR country = %(country)s)
"""

_SUMMARY = """
SELECT coalesce(sum(order_count), 0) AS orders, coalesce(sum(revenue), 0) AS revenue,
       coalesce(sum(units_sold), 0) AS units, coalesce(min(min_order_value), 0) AS smallest,
       coalesce(max(max_order_value), 0) AS largest
FROM public.order_metrics WHERE window_start >= %s AND window_start < %s
"""

_LATE = """
SELECT coalesce(sum(late_transactions), 0) AS orders, coalesce(sum(late_revenue), 0) AS revenue
FROM public.stream_day_ledger
WHERE event_date >= (%s AT TIME ZONE 'UTC')::date AND event_date <= (%s AT TIME ZONE 'UTC')::date
"""

_BY_COUNTRY = """
SELECT country, sum(revenue) AS revenue, sum(order_count) AS orders, sum(units_sold) AS units
FROM public.order_metrics WHERE window_start >= %s
GROUP BY country ORDER BY revenue DESC, country
"""

_BY_CATEGORY = """
SELECT category, sum(total_amount) AS revenue, sum(transaction_count) AS transactions,
       sum(units_sold) AS units
FROM public.sales_metrics WHERE window_start >= %s
GROUP BY category ORDER BY revenue DESC, category
"""

_TIMELINE = """
SELECT window_start, sum(revenue) AS revenue, sum(order_count) AS orders
FROM public.order_metrics WHERE window_start >= %s
GROUP BY window_start ORDER BY window_start
"""


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def metrics(conn: Conn, *, start_date: date | None, end_date: date | None,
                  category: str | None, country: str | None, limit: int,
                  offset: int) -> SalesMetricsPage:
    """Windows that start within [start_date, end_date] (whole UTC days), newest first."""
    params = {
        "start": _day_start(start_date) if start_date else None,
        "end": _day_start(end_date + timedelta(days=1)) if end_date else None,
        "category": category, "country": country, "limit": limit, "offset": offset,
    }
    rows = await fetch_all(conn, _METRICS, params)
    total = await page_total(conn, rows, _COUNT, params)
    return SalesMetricsPage(
        data_as_of=await as_of(conn, "sales_metrics"), total=total, limit=limit, offset=offset,
        items=[SalesMetric.model_validate(row) for row in rows],
    )


async def summary(conn: Conn, period: Period) -> SalesSummary:
    """Order-level totals from the start of the period until now."""
    end = datetime.now(UTC)
    start = period_start(period, end)
    row = await fetch_one(conn, _SUMMARY, (start, end))
    late = await fetch_one(conn, _LATE, (start, end))
    orders, revenue = int(row["orders"]), float(row["revenue"])
    return SalesSummary(
        data_as_of=await as_of(conn, "order_metrics"), period=period, start_date=start,
        end_date=end,
        metrics=SalesSummaryMetrics(
            transaction_count=orders, total_revenue=revenue, units_sold=int(row["units"]),
            avg_transaction_value=round(revenue / orders, 2) if orders else 0.0,
            min_transaction=float(row["smallest"]), max_transaction=float(row["largest"]),
        ),
        left_out_late=LateTransactions(transaction_count=int(late["orders"]),
                                       total_revenue=float(late["revenue"])),
    )


async def by_country(conn: Conn, period: Period) -> SalesByCountry:
    """Revenue, orders and units per country since the start of the period."""
    start = period_start(period)
    rows = await fetch_all(conn, _BY_COUNTRY, (start,))
    countries = []
    for row in rows:
        iso3, lat, lon = locate(row["country"])
        orders, revenue = int(row["orders"]), float(row["revenue"])
        countries.append(CountrySales(
            country=row["country"], iso3=iso3, latitude=lat, longitude=lon, revenue=revenue,
            orders=orders, units_sold=int(row["units"]),
            avg_order_value=round(revenue / orders, 2) if orders else 0.0,
        ))
    return SalesByCountry(data_as_of=await as_of(conn, "order_metrics"), period=period,
                          start_date=start, countries=countries)


async def by_category(conn: Conn, period: Period) -> SalesByCategory:
    """Revenue of each category's own lines since the start of the period."""
    start = period_start(period)
    rows = await fetch_all(conn, _BY_CATEGORY, (start,))
    grand = sum((float(row["revenue"]) for row in rows), 0.0)
    categories = [
        CategorySales(
            category=row["category"], revenue=float(row["revenue"]),
            transaction_count=int(row["transactions"]), units_sold=int(row["units"]),
            share=round(float(row["revenue"]) / grand, 4) if grand else 0.0,
        )
        for row in rows
    ]
    return SalesByCategory(data_as_of=await as_of(conn, "sales_metrics"), period=period,
                           start_date=start, categories=categories)


async def timeline(conn: Conn, minutes: int) -> SalesTimeline:
    """Revenue and orders per minute over the last ``minutes`` minutes."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = await fetch_all(conn, _TIMELINE, (start,))
    return SalesTimeline(
        data_as_of=await as_of(conn, "order_metrics"), minutes=minutes,
        points=[MinuteSales(window_start=r["window_start"], revenue=float(r["revenue"]),
                            orders=int(r["orders"])) for r in rows],
    )
