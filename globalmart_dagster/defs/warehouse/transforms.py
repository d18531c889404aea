"""Pure transforms of the warehouse: raw-layer DataFrames in, fact rows out (Spark), plus the
calendar of ``dim_date`` (pandas). No I/O here; ``assets.py`` reads and writes.

Duplicated events (same ``event_id``, e.g. a producer retry) count once, as in the stream, so
the batch revenue of a day reconciles with the stream's ``sales_metrics``.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

LINE_AMOUNT = DecimalType(14, 2)

SALES_COLUMNS = [
    "event_date", "date_key", "transaction_id", "line_number", "event_id", "event_time",
    "user_id", "product_id", "country", "city", "session_id", "category", "payment_method",
    "currency", "quantity", "unit_price", "line_amount",
]
SESSION_COLUMNS = [
    "event_date", "date_key", "session_id", "user_id", "session_start", "session_end",
    "duration_seconds", "page_views", "view_seconds", "cart_adds", "cart_removes",
    "cart_updates", "purchases", "revenue", "converted",
]


def date_key(column: F.Column) -> F.Column:
    """YYYYMMDD as an integer, the key of ``dim_date``."""
    return (F.year(column) * 10000 + F.month(column) * 100 + F.dayofmonth(column)).cast("int")


def dedupe_events(events: DataFrame) -> DataFrame:
    """One row per ``event_id`` (re-delivered events carry the same id and content)."""
    return events.dropDuplicates(["event_id"])


def sales_lines(transactions: DataFrame) -> DataFrame:
    """Transaction events → one row per line item (``fact_sales`` grain) with its revenue
    ``line_amount = quantity × unit_price`` and its own category."""
    lines = dedupe_events(transactions).select(
        "*", F.posexplode("items").alias("position", "item")
    )
    return lines.select(
        F.col("event_date"),
        date_key(F.col("event_date")).alias("date_key"),
        F.col("transaction_id"),
        (F.col("position") + 1).cast("short").alias("line_number"),
        F.col("event_id"),
        F.col("event_time"),
        F.col("user_id"),
        F.col("item.product_id").alias("product_id"),
        F.col("country"),
        F.col("city"),
        F.col("session_id"),
        F.col("item.category").alias("category"),
        F.col("payment_method"),
        F.col("currency"),
        F.col("item.quantity").alias("quantity"),
        F.col("item.unit_price").alias("unit_price"),
        (F.col("item.quantity") * F.col("item.unit_price")).cast(LINE_AMOUNT).alias("line_amount"),
    )


def session_facts(views: DataFrame, carts: DataFrame, transactions: DataFrame) -> DataFrame:
    """One row per session and day from its page views, cart events and purchases (raw-layer
    rows of one day); ``converted`` means the session bought something that day.

    The three topics become one activity stream that is de-duplicated once (event ids are
    UUIDs, unique across topics) and aggregated once: two shuffles in all."""
    zero = F.lit(0)
    no_revenue = F.lit(0).cast(LINE_AMOUNT)
    view_rows = views.select(
        "event_id", "event_date", "session_id", "user_id", "event_time",
        F.lit(1).alias("page_views"), F.col("duration_seconds").cast("long").alias("view_seconds"),
        zero.alias("cart_adds"), zero.alias("cart_removes"), zero.alias("cart_updates"),
        zero.alias("purchases"), no_revenue.alias("revenue"),
    )
    cart_rows = carts.select(
        "event_id", "event_date", "session_id", "user_id", "event_time",
        zero.alias("page_views"), zero.cast("long").alias("view_seconds"),
        (F.col("action") == "add").cast("int").alias("cart_adds"),
        (F.col("action") == "remove").cast("int").alias("cart_removes"),
        (F.col("action") == "update").cast("int").alias("cart_updates"),
        zero.alias("purchases"), no_revenue.alias("revenue"),
    )
    purchase_rows = transactions.select(
        "event_id", "event_date", "session_id", "user_id", "event_time",
        zero.alias("page_views"), zero.cast("long").alias("view_seconds"),
        zero.alias("cart_adds"), zero.alias("cart_removes"), zero.alias("cart_updates"),
        F.lit(1).alias("purchases"),
        F.aggregate("items", no_revenue,
                    lambda total, item: (total + item.quantity * item.unit_price)
                    .cast(LINE_AMOUNT)).alias("revenue"),
    )
    activity = dedupe_events(view_rows.unionByName(cart_rows).unionByName(purchase_rows))
    sessions = activity.groupBy("event_date", "session_id").agg(
        F.min("user_id").alias("user_id"),
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        F.sum("page_views").cast("int").alias("page_views"),
        F.sum("view_seconds").cast("long").alias("view_seconds"),
        F.sum("cart_adds").cast("int").alias("cart_adds"),
        F.sum("cart_removes").cast("int").alias("cart_removes"),
        F.sum("cart_updates").cast("int").alias("cart_updates"),
        F.sum("purchases").cast("int").alias("purchases"),
        F.sum("revenue").cast(LINE_AMOUNT).alias("revenue"),
    )
    return sessions.select(
        "event_date",
        date_key(F.col("event_date")).alias("date_key"),
        "session_id", "user_id", "session_start", "session_end",
        (F.col("session_end").cast("double") - F.col("session_start").cast("double"))
        .alias("duration_seconds"),
        "page_views", "view_seconds", "cart_adds", "cart_removes", "cart_updates", "purchases",
        "revenue",
        (F.col("purchases") > 0).alias("converted"),
    )


def calendar(start: date, end: date) -> pd.DataFrame:
    """Rows of ``dim_date`` for every day from ``start`` to ``end`` inclusive."""
    days = pd.date_range(start, end, freq="D")
    iso = days.isocalendar()
    return pd.DataFrame({
        "date_key": (days.year * 10000 + days.month * 100 + days.day).astype("int32"),
        "full_date": days.date,
        "year": days.year.astype("int16"),
        "quarter": days.quarter.astype("int16"),
        "month": days.month.astype("int16"),
        "month_name": days.month_name(),
        "day_of_month": days.day.astype("int16"),
        "day_of_week": (days.day_of_week + 1).astype("int16"),
        "day_name": days.day_name(),
        "iso_year": iso["year"].to_numpy().astype("int16"),
        "iso_week": iso["week"].to_numpy().astype("int16"),
        "is_weekend": days.day_of_week >= 5,
    })
