"""Transaction anomaly rules.

- ``high_value``: total_amount > 5,000 (exactly 5,000 is not).
- ``unusual_quantity``: a line with quantity > 10.
- ``total_mismatch``: total_amount ≠ Σ quantity × unit_price.
- ``rapid_fire``: at least the 5th transaction of the same user within (t − 60 s, t]. It needs
  the user's earlier transactions across micro-batches, so it is decided in PostgreSQL
  (:mod:`streaming.sinks`) from :func:`user_transactions`.

Every anomaly has a score in [0, 1] that grows with how far past its threshold it is.
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.transforms.sales import AMOUNT, lines_total

HIGH_VALUE_THRESHOLD = Decimal("5000.00")
MAX_LINE_QUANTITY = 10
RAPID_FIRE_COUNT = 5
RAPID_FIRE_WINDOW_SECONDS = 60

ANOMALY_COLUMNS = ["transaction_id", "user_id", "amount", "anomaly_score", "anomaly_type",
                   "description", "event_time"]


def _score(excess: Column) -> Column:
    """0.5 just past the threshold, rising to 1.0 at ``excess`` = 1."""
    return F.least(F.lit(1.0), F.lit(0.5) + F.lit(0.5) * excess.cast("double"))


def rule_anomalies(transactions: DataFrame) -> DataFrame:
    """The high_value, unusual_quantity and total_mismatch anomalies of ``transactions``, one
    row per (transaction, type) with the columns of ``transaction_anomalies`` except
    ``detected_at``."""
    base = transactions.select(
        "transaction_id", "user_id", "event_time", "total_amount",
        lines_total(F.col("items")).alias("lines_total"),
        F.array_max(F.transform("items", lambda item: item["quantity"])).alias("max_quantity"),
    )
    amount = F.col("total_amount").cast(AMOUNT)
    high = base.where(F.col("total_amount") > F.lit(HIGH_VALUE_THRESHOLD)).select(
        "transaction_id", "user_id", amount.alias("amount"),
        _score((F.col("total_amount") - F.lit(HIGH_VALUE_THRESHOLD)) / F.lit(10_000))
        .alias("anomaly_score"),
        F.lit("high_value").alias("anomaly_type"),
        F.format_string("total %s exceeds %s", F.col("total_amount").cast("string"),
                        F.lit(str(HIGH_VALUE_THRESHOLD))).alias("description"),
        "event_time",
    )
    quantity = base.where(F.col("max_quantity") > MAX_LINE_QUANTITY).select(
        "transaction_id", "user_id", amount.alias("amount"),
        _score((F.col("max_quantity") - MAX_LINE_QUANTITY) / F.lit(10.0)).alias("anomaly_score"),
        F.lit("unusual_quantity").alias("anomaly_type"),
        F.format_string("a line of %d units (more than %d)", F.col("max_quantity"),
                        F.lit(MAX_LINE_QUANTITY)).alias("description"),
        "event_time",
    )
    difference = F.abs(F.col("total_amount") - F.col("lines_total"))
    mismatch = base.where(F.col("total_amount") != F.col("lines_total")).select(
        "transaction_id", "user_id", amount.alias("amount"),
        _score(difference / F.greatest(F.col("lines_total"), F.lit(Decimal("0.01"))))
        .alias("anomaly_score"),
        F.lit("total_mismatch").alias("anomaly_type"),
        F.format_string("total %s differs from the lines' sum %s",
                        F.col("total_amount").cast("string"),
                        F.col("lines_total").cast("string")).alias("description"),
        "event_time",
    )
    return high.unionByName(quantity).unionByName(mismatch)


def user_transactions(transactions: DataFrame) -> DataFrame:
    """What the rapid-fire rule needs of each transaction: user_id, transaction_id,
    event_time, amount."""
    return transactions.select("user_id", "transaction_id", "event_time",
                               F.col("total_amount").cast(AMOUNT).alias("amount"))
