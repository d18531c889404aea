"""The guide's client side, copied from ``GlobalMart_Implementation_Guide_Part3`` (section 4,
``api/models.py`` and the shapes its ``api/main.py`` returns), kept here and never imported by
the application: the contract our users' clients are written against.

The first five models are the guide's own, verbatim; the others spell out the dictionaries its
handlers return where it declares no model."""

from datetime import datetime
from typing import List, Optional  # noqa: UP035 - as the guide writes them

from pydantic import BaseModel


class SalesMetric(BaseModel):
    """Sales metrics model"""
    window_start: datetime
    window_end: datetime
    category: Optional[str] = None  # noqa: UP045
    country: Optional[str] = None  # noqa: UP045
    total_amount: float
    transaction_count: int
    avg_transaction_value: float


class CustomerSegment(BaseModel):
    """Customer segmentation model"""
    user_id: str
    recency: int
    frequency: int
    monetary: float
    r_score: int
    f_score: int
    m_score: int
    rfm_segment: str
    analysis_date: datetime


class ProductPerformance(BaseModel):
    """Product performance model"""
    product_id: str
    product_name: str
    category: str
    units_sold: int
    total_revenue: float
    avg_price: float
    performance_score: float
    rank_in_category: int


class TransactionAnomaly(BaseModel):
    """Transaction anomaly model"""
    transaction_id: str
    user_id: str
    amount: float
    anomaly_score: float
    anomaly_type: str
    detected_at: datetime
    description: str


class DashboardMetrics(BaseModel):
    """Dashboard summary metrics"""
    total_revenue_today: float
    total_transactions_today: int
    avg_transaction_value: float
    active_users: int
    top_category: str
    top_country: str
    anomalies_count: int


# --- the dictionaries the guide's handlers return ---------------------------------------------
class Health(BaseModel):
    status: str
    timestamp: datetime
    version: str


class SummaryMetrics(BaseModel):
    transaction_count: int
    total_revenue: float
    avg_transaction_value: float
    min_transaction: float
    max_transaction: float


class SalesSummary(BaseModel):
    period: str
    start_date: datetime
    end_date: datetime
    metrics: SummaryMetrics


class SegmentShare(BaseModel):
    segment: str
    customer_count: int
    avg_customer_value: float
    total_segment_value: float


class SegmentDistribution(BaseModel):
    segments: List[SegmentShare]  # noqa: UP006


class TopProduct(BaseModel):
    product_id: str
    product_name: str
    category: str
    total_revenue: float
    units_sold: int


class TopPerformers(BaseModel):
    top_products: List[TopProduct]  # noqa: UP006


class Trend(BaseModel):
    trend_type: str
    date: datetime


class Trends(BaseModel):
    trends: List[Trend]  # noqa: UP006
