"""The Dagster marts (latest ``analysis_date`` snapshot): RFM segments, product performance
and sales trends."""

from __future__ import annotations

from psycopg import sql

from api.queries import Conn, fetch_all, fetch_one, page_total
from api.queries.freshness import as_of
from api.schemas import (
    CustomerSegment,
    CustomerSegmentsPage,
    ProductPerformance,
    ProductPerformancePage,
    ProductSort,
    SalesTrend,
    SalesTrends,
    Segment,
    SegmentDistribution,
    SegmentShare,
    TopPerformers,
    TopProduct,
    TrendType,
)

_LATEST_RFM = "(SELECT max(analysis_date) FROM marts.customer_rfm_analysis)"
_LATEST_PRODUCTS = "(SELECT max(analysis_date) FROM marts.product_performance)"

_SEGMENTS = f"""
SELECT user_id, recency, frequency, monetary, r_score, f_score, m_score, rfm_segment,
       analysis_date, count(*) OVER () AS total
FROM marts.customer_rfm_analysis
WHERE analysis_date = {_LATEST_RFM}
  AND (%(segment)s::text IS NULL OR rfm_segment = %(segment)s)
ORDER BY monetary DESC, user_id
LIMIT %(limit)s OFFSET %(offset)s
"""

_SEGMENTS_COUNT = f"""
SELECT count(*) AS total FROM marts.customer_rfm_analysis
WHERE analysis_date = {_LATEST_RFM}
  AND (%(segment)s::text IS NULL OR rfm_segment = %(segment)s)
"""

_DISTRIBUTION = f"""
SELECT rfm_segment AS segment, count(*) AS customer_count, avg(monetary) AS avg_value,
       sum(monetary) AS total_value
FROM marts.customer_rfm_analysis WHERE analysis_date = {_LATEST_RFM}
GROUP BY rfm_segment ORDER BY customer_count DESC, rfm_segment
"""

# The sort column is chosen from this fixed map, never from the request text.
_PRODUCT_SORT: dict[str, sql.Composable] = {
    "total_revenue": sql.SQL("total_revenue"),
    "units_sold": sql.SQL("units_sold"),
    "performance_score": sql.SQL("performance_score"),
}

_PRODUCTS = sql.SQL(f"""
SELECT product_id, product_name, category, units_sold, total_revenue, avg_price,
       performance_score, rank_in_category, count(*) OVER () AS total
FROM marts.product_performance
WHERE analysis_date = {_LATEST_PRODUCTS}
  AND (%(category)s::text IS NULL OR category = %(category)s)
ORDER BY {{sort}} DESC, product_id
LIMIT %(limit)s OFFSET %(offset)s
""")

_PRODUCTS_COUNT = f"""
SELECT count(*) AS total FROM marts.product_performance
WHERE analysis_date = {_LATEST_PRODUCTS}
  AND (%(category)s::text IS NULL OR category = %(category)s)
"""

_TOP = f"""
SELECT product_id, product_name, category, total_revenue, units_sold
FROM marts.product_performance WHERE analysis_date = {_LATEST_PRODUCTS}
ORDER BY total_revenue DESC, product_id LIMIT %s
"""

_TRENDS = """
SELECT trend_type, date, revenue, orders, average_order_value, moving_average, growth
FROM marts.sales_trends WHERE trend_type = %s ORDER BY date DESC LIMIT %s
"""


async def _latest(conn: Conn, table: str):
    row = await fetch_one(conn, f"SELECT max(analysis_date) AS d FROM {table}")
    return row["d"]


async def segments(conn: Conn, *, segment: Segment | None, limit: int,
                   offset: int) -> CustomerSegmentsPage:
    """Customers of the latest snapshot, optionally of one segment."""
    params = {"segment": segment, "limit": limit, "offset": offset}
    rows = await fetch_all(conn, _SEGMENTS, params)
    total = await page_total(conn, rows, _SEGMENTS_COUNT, params)
    return CustomerSegmentsPage(
        data_as_of=await as_of(conn, "marts.customer_rfm_analysis"),
        analysis_date=await _latest(conn, "marts.customer_rfm_analysis"),
        total=total, limit=limit, offset=offset,
        items=[CustomerSegment.model_validate(row) for row in rows],
    )


async def segment_distribution(conn: Conn) -> SegmentDistribution:
    """Customer count and value per segment of the latest snapshot."""
    rows = await fetch_all(conn, _DISTRIBUTION)
    return SegmentDistribution(
        data_as_of=await as_of(conn, "marts.customer_rfm_analysis"),
        analysis_date=await _latest(conn, "marts.customer_rfm_analysis"),
        segments=[
            SegmentShare(segment=r["segment"], customer_count=int(r["customer_count"]),
                         avg_customer_value=round(float(r["avg_value"]), 2),
                         total_segment_value=round(float(r["total_value"]), 2))
            for r in rows
        ],
    )


async def products(conn: Conn, *, category: str | None, sort_by: ProductSort,
                   limit: int, offset: int) -> ProductPerformancePage:
    """Products of the latest snapshot sorted by ``sort_by`` (descending)."""
    params = {"category": category, "limit": limit, "offset": offset}
    query = _PRODUCTS.format(sort=_PRODUCT_SORT[sort_by])
    rows = await fetch_all(conn, query, params)
    total = await page_total(conn, rows, _PRODUCTS_COUNT, params)
    return ProductPerformancePage(
        data_as_of=await as_of(conn, "marts.product_performance"),
        analysis_date=await _latest(conn, "marts.product_performance"),
        total=total, limit=limit, offset=offset, sort_by=sort_by,
        items=[ProductPerformance.model_validate(row) for row in rows],
    )


async def top_performers(conn: Conn, top_n: int) -> TopPerformers:
    """The ``top_n`` products with the most revenue."""
    rows = await fetch_all(conn, _TOP, (top_n,))
    return TopPerformers(
        data_as_of=await as_of(conn, "marts.product_performance"),
        analysis_date=await _latest(conn, "marts.product_performance"),
        top_products=[TopProduct.model_validate(row) for row in rows],
    )


async def trends(conn: Conn, trend_type: TrendType, limit: int) -> SalesTrends:
    """The latest ``limit`` periods of a trend."""
    rows = await fetch_all(conn, _TRENDS, (trend_type, limit))
    return SalesTrends(
        data_as_of=await as_of(conn, "marts.sales_trends"), trend_type=trend_type,
        trends=[SalesTrend.model_validate(row) for row in rows],
    )
