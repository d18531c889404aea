"""Sales metrics: revenue per tumbling window, category and country, and order figures.

Money stays decimal end to end: a line's revenue is ``quantity × unit_price`` (exact), and
sums of decimals are exact, so the tables reconcile with the events to the cent.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

AMOUNT = "decimal(14,2)"


def lines_total(items: Column) -> Column:
    """Σ quantity × unit_price of a transaction's ``items`` array (exact decimal)."""
    zero = F.lit(0).cast("decimal(18,2)")
    return F.aggregate(
        items, zero,
        lambda acc, item: (acc + item["quantity"] * item["unit_price"]).cast("decimal(18,2)"),
    ).cast(AMOUNT)


def transaction_lines(transactions: DataFrame) -> DataFrame:
    """One row per line: transaction_id, user_id, event_time, country, product_id, category,
    quantity, unit_price, line_revenue."""
    return transactions.select(
        "transaction_id", "user_id", "event_time", "country",
        F.explode("items").alias("line"),
    ).select(
        "transaction_id", "user_id", "event_time", "country",
        F.col("line.product_id").alias("product_id"),
        F.col("line.category").alias("category"),
        F.col("line.quantity").alias("quantity"),
        F.col("line.unit_price").alias("unit_price"),
        (F.col("line.quantity") * F.col("line.unit_price")).cast(AMOUNT).alias("line_revenue"),
    )


def sales_metrics(transactions: DataFrame, window: str = "1 minute") -> DataFrame:
    """Revenue per tumbling ``window`` × category × country; each line's revenue counts in its
    own category. Columns: window_start, window_end, category, country, total_amount,
    transaction_count (transactions with a line in the category), avg_transaction_value,
    units_sold."""
    lines = transaction_lines(transactions)
    return (
        lines.groupBy(F.window("event_time", window).alias("w"), "category", "country")
        .agg(
            F.sum("line_revenue").cast(AMOUNT).alias("total_amount"),
            F.countDistinct("transaction_id").cast("long").alias("transaction_count"),
            F.sum("quantity").cast("long").alias("units_sold"),
        )
        .select(
            F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
            "category", "country", "total_amount", "transaction_count",
            F.round(F.col("total_amount") / F.col("transaction_count"), 2).cast(AMOUNT)
            .alias("avg_transaction_value"),
            "units_sold",
        )
    )


def order_metrics(transactions: DataFrame, window: str = "1 minute") -> DataFrame:
    """Order-level figures per tumbling ``window`` × country (each transaction once):
    window_start, window_end, country, order_count, revenue (Σ lines), billed_amount
    (Σ total_amount as sent), units_sold."""
    return (
        transactions.select(
            "event_time", "country", "total_amount",
            lines_total(F.col("items")).alias("revenue"),
            F.aggregate("items", F.lit(0).cast("long"),
                        lambda acc, item: acc + item["quantity"]).alias("units"),
        )
        .groupBy(F.window("event_time", window).alias("w"), "country")
        .agg(
            F.count(F.lit(1)).cast("long").alias("order_count"),
            F.sum("revenue").cast(AMOUNT).alias("revenue"),
            F.sum("total_amount").cast(AMOUNT).alias("billed_amount"),
            F.sum("units").cast("long").alias("units_sold"),
        )
        .select(F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
                "country", "order_count", "revenue", "billed_amount", "units_sold")
    )
