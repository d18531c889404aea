"""Response models. Field names follow the seed (``GlobalMart_Implementation_Guide_Part3``);
every answer read from a mart or a real-time table carries its freshness in ``X-Data-As-Of``
(and, unless the guide answers a plain list, in ``data_as_of``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from globalmart.vocabulary import Segment, Severity, StockStatus

Period = Literal["today", "week", "month"]
ProductSort = Literal["total_revenue", "units_sold", "performance_score"]
TrendType = Literal["daily", "weekly", "monthly"]

NONE_YET = "N/A"  # a text field without a value yet, as the guide answers it

AS_OF = Field(
    description="How fresh the data is: the end of the latest window written (real-time "
    "tables) or the end of the latest analysed day (marts). Null when the source is empty."
)


class Fresh(BaseModel):
    """Base of every answer drawn from stored data."""

    data_as_of: datetime | None = AS_OF


class Page(Fresh):
    """A page of rows; its total and the link to the next page also go in headers."""

    total: int = Field(description="Rows matching the filters, all pages together.")
    limit: int
    offset: int


class ListPage(Page):
    """A page answered as the guide's plain JSON list of its ``items``; freshness and paging
    go in the headers only."""

    items: Sequence[BaseModel]


# Headers of every answer drawn from stored data (declared in the OpenAPI schema).
DATA_AS_OF = "X-Data-As-Of"
TOTAL_COUNT = "X-Total-Count"
ANSWER_HEADERS = {
    DATA_AS_OF: {"description": "How fresh the data is (ISO 8601): the end of the latest window "
                 "written, or the end of the latest analysed day (marts). Absent when the "
                 "source is empty.", "schema": {"type": "string", "format": "date-time"}},
}
PAGE_HEADERS = {
    **ANSWER_HEADERS,
    TOTAL_COUNT: {"description": "Rows matching the filters, all pages together.",
                  "schema": {"type": "integer"}},
    "Link": {"description": 'The next page, as `<URL>; rel="next"` (RFC 8288); absent on the '
             "last page.", "schema": {"type": "string"}},
}


# --- sales -----------------------------------------------------------------------------------
class SalesMetric(BaseModel):
    """One tumbling one-minute window of one category in one country."""

    window_start: datetime
    window_end: datetime
    category: str
    country: str
    total_amount: float = Field(description="Revenue of the category's lines.")
    transaction_count: int = Field(description="Transactions with a line in this category.")
    avg_transaction_value: float
    units_sold: int


class SalesMetricsPage(ListPage):
    """Sales metric windows, newest first."""

    items: list[SalesMetric]


class SalesSummaryMetrics(BaseModel):
    """Order-level totals of a period (each transaction counted once)."""

    transaction_count: int
    total_revenue: float
    avg_transaction_value: float
    min_transaction: float = Field(description="The smallest order (Σ lines) of the period; "
                                               "0 without orders.")
    max_transaction: float = Field(description="The largest order (Σ lines) of the period; "
                                               "0 without orders.")
    units_sold: int


class LateTransactions(BaseModel):
    """Transactions of the period's days that arrived later than the stream's watermark: left
    out of the real-time figures, counted in stock and in the warehouse (day by day)."""

    transaction_count: int
    total_revenue: float


class SalesSummary(Fresh):
    """Totals since the start of the period."""

    period: Period
    start_date: datetime
    end_date: datetime
    metrics: SalesSummaryMetrics
    left_out_late: LateTransactions = Field(
        description="What the real-time figures leave out of the period's days as too late "
                    "(from the stream's day ledger).")


class CountrySales(BaseModel):
    """Sales of one country, with what a map needs."""

    country: str
    iso3: str = Field(description="ISO 3166-1 alpha-3 code (for choropleth maps).")
    latitude: float
    longitude: float
    revenue: float
    orders: int
    units_sold: int
    avg_order_value: float


class SalesByCountry(Fresh):
    """Sales per country since the start of the period, largest first."""

    period: Period
    start_date: datetime
    countries: list[CountrySales]


class CategorySales(BaseModel):
    """Sales of one category (revenue of its own lines)."""

    category: str
    revenue: float
    transaction_count: int
    units_sold: int
    share: float = Field(description="Share of all category revenue in the period, 0-1.")


class SalesByCategory(Fresh):
    """Sales per category since the start of the period, largest first."""

    period: Period
    start_date: datetime
    categories: list[CategorySales]


class MinuteSales(BaseModel):
    """Order-level sales of one minute, all countries."""

    window_start: datetime
    revenue: float
    orders: int


class SalesTimeline(Fresh):
    """Revenue per minute over the last minutes, oldest first."""

    minutes: int
    points: list[MinuteSales]


# --- customers -------------------------------------------------------------------------------
class CustomerSegment(BaseModel):
    """A customer's RFM scores and segment."""

    user_id: str
    recency: int = Field(description="Days since the last purchase.")
    frequency: int = Field(description="Transactions.")
    monetary: float = Field(description="Revenue.")
    r_score: int
    f_score: int
    m_score: int
    rfm_segment: Segment
    analysis_date: dt.date


class CustomerSegmentsPage(ListPage):
    """Customers of the latest RFM snapshot, highest monetary value first."""

    analysis_date: dt.date | None
    items: list[CustomerSegment]


class SegmentShare(BaseModel):
    """Size and value of one segment."""

    segment: str
    customer_count: int
    avg_customer_value: float
    total_segment_value: float


class SegmentDistribution(Fresh):
    """Customers per segment in the latest RFM snapshot, largest first."""

    analysis_date: dt.date | None
    segments: list[SegmentShare]


# --- products --------------------------------------------------------------------------------
class ProductPerformance(BaseModel):
    """A product's performance in the latest snapshot."""

    product_id: str
    product_name: str
    category: str
    units_sold: int
    total_revenue: float
    avg_price: float
    performance_score: float
    rank_in_category: int


class ProductPerformancePage(ListPage):
    """Products of the latest snapshot, sorted as asked."""

    analysis_date: dt.date | None
    sort_by: ProductSort
    items: list[ProductPerformance]


class TopProduct(BaseModel):
    """A top product by revenue."""

    product_id: str
    product_name: str
    category: str
    total_revenue: float
    units_sold: int


class TopPerformers(Fresh):
    """The best-selling products by revenue."""

    analysis_date: dt.date | None
    top_products: list[TopProduct]


# --- trends ----------------------------------------------------------------------------------
class SalesTrend(BaseModel):
    """One period of a sales trend."""

    trend_type: TrendType
    date: dt.date = Field(description="First day of the period.")
    revenue: float
    orders: int
    average_order_value: float
    moving_average: float | None
    growth: float | None = Field(description="Change vs the previous period (0.1 = +10 %).")


class SalesTrends(Fresh):
    """The latest periods of a trend, newest first."""

    trend_type: TrendType
    trends: list[SalesTrend]


# --- monitoring ------------------------------------------------------------------------------
class TransactionAnomaly(BaseModel):
    """A transaction flagged by the streaming rules."""

    transaction_id: str
    user_id: str
    amount: float
    anomaly_score: float
    anomaly_type: str
    detected_at: datetime
    description: str


class AnomaliesPage(ListPage):
    """Anomalies of the last hours, newest first."""

    hours: int
    items: list[TransactionAnomaly]


class DashboardMetrics(Fresh):
    """Executive figures of the current UTC day."""

    total_revenue_today: float
    total_transactions_today: int
    avg_transaction_value: float
    active_users: int = Field(description="Distinct users with session activity in the last "
                              "`active_window_minutes` minutes.")
    active_window_minutes: int
    active_users_today: int = Field(description="Distinct users with a session today.")
    top_category: str = Field(description="Category with the most revenue today; "
                                          f"{NONE_YET!r} before the day's first sale.")
    top_country: str = Field(description="Country with the most revenue today; "
                                         f"{NONE_YET!r} before the day's first sale.")
    anomalies_count: int = Field(description="Anomalies detected today.")
    critical_alerts_today: int
    low_stock_products: int = Field(description="Products low, critical or out of stock now.")


class TopicIngestion(BaseModel):
    """Ingestion of one topic over the recent window."""

    topic: str
    records_per_second: float
    records: int = Field(description="Records read in the window.")
    lag_records: int = Field(description="Records the latest batch left behind the log end "
                                         "the source saw when it planned the batch.")
    last_batch_at: datetime | None


class QueryHealth(BaseModel):
    """One streaming query."""

    query_name: str
    batches: int = Field(description="Batches in the window.")
    last_batch_id: int
    last_batch_at: datetime
    avg_batch_duration_ms: float
    max_batch_duration_ms: int


class TableFreshness(BaseModel):
    """How fresh one table is."""

    table: str
    kind: Literal["realtime", "mart"]
    data_as_of: datetime | None
    age_seconds: float | None
    rows: int


class PipelineHealth(Fresh):
    """Ingestion rates per topic, lag, batch durations and the freshness of every table."""

    window_minutes: int
    topics: list[TopicIngestion]
    queries: list[QueryHealth]
    tables: list[TableFreshness]
    dead_letters_in_window: int


# --- inventory -------------------------------------------------------------------------------
class InventoryItem(BaseModel):
    """Stock of one product."""

    product_id: str
    product_name: str
    category: str
    current_stock: int
    status: StockStatus
    units_sold: int
    units_restocked: int
    updated_at: datetime


class StockCounts(BaseModel):
    """Products per stock status."""

    ok: int = 0
    low: int = 0
    critical: int = 0
    out: int = 0
    total: int = 0


class InventoryStatus(Page):
    """Stock per product plus the count per status."""

    summary: StockCounts
    items: list[InventoryItem]


class LowStock(Fresh):
    """Products that are low, critical or out of stock, emptiest first."""

    items: list[InventoryItem]


# --- sessions --------------------------------------------------------------------------------
class SessionSummary(Fresh):
    """Browsing sessions that had activity in the last hours."""

    hours: int
    sessions: int
    unique_users: int
    active_users: int
    avg_duration_seconds: float
    avg_page_views: float
    conversion_rate: float = Field(description="Sessions with a purchase / sessions, 0-1.")
    revenue: float


class AbandonedCart(BaseModel):
    """A cart left without a purchase."""

    session_id: str
    session_start: datetime
    user_id: str
    last_cart_event_at: datetime
    items_added: int
    detected_at: datetime


class CartAbandonment(Fresh):
    """Abandoned carts detected in the last hours."""

    hours: int
    abandoned_carts: int
    sessions_with_cart: int = Field(description="Sessions with at least one cart add.")
    abandonment_rate: float = Field(description="Abandoned carts / sessions with a cart, 0-1.")
    items: list[AbandonedCart]


# --- alerts ----------------------------------------------------------------------------------
class AlertItem(BaseModel):
    """An alert raised by the streaming job."""

    alert_id: str
    alert_type: str
    severity: Severity
    entity_id: str
    message: str
    created_at: datetime


class Alerts(Fresh):
    """Alerts of the last hours, newest first."""

    hours: int
    counts: dict[str, int] = Field(description="Alerts per severity in the window.")
    items: list[AlertItem]


# --- service ---------------------------------------------------------------------------------
class Health(BaseModel):
    """Liveness, in the guide's shape."""

    status: Literal["healthy"]
    timestamp: datetime
    version: str


class Check(BaseModel):
    """One dependency."""

    ok: bool
    error: str | None = None
    latency_ms: float


class Readiness(BaseModel):
    """Dependencies: PostgreSQL, Redis and the Kafka broker."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


class ErrorMessage(BaseModel):
    """An error other than a validation error."""

    detail: str
