"""Stock movements per product: units sold (from transactions), restocks and adjustments
(from inventory events). Current stock and its status are derived in PostgreSQL, where the
initial stock (``source.products``) and the running totals live."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from streaming.transforms.sales import transaction_lines

MOVEMENT_COLUMNS = ["product_id", "units_sold", "units_restocked", "units_adjusted"]


def units_sold(transactions: DataFrame) -> DataFrame:
    """Units sold per product in ``transactions`` (movement columns, restocks 0)."""
    return (
        transaction_lines(transactions).groupBy("product_id")
        .agg(F.sum("quantity").cast("long").alias("units_sold"))
        .select("product_id", "units_sold", F.lit(0).cast("long").alias("units_restocked"),
                F.lit(0).cast("long").alias("units_adjusted"))
    )


def stock_movements(inventory_events: DataFrame) -> DataFrame:
    """Restocked and adjusted units per product in ``inventory_events`` (movement columns,
    units sold 0)."""
    delta = F.col("quantity_delta").cast("long")
    return inventory_events.groupBy("product_id").agg(
        F.lit(0).cast("long").alias("units_sold"),
        F.sum(F.when(F.col("kind") == "restock", delta).otherwise(0)).cast("long")
        .alias("units_restocked"),
        F.sum(F.when(F.col("kind") == "adjustment", delta).otherwise(0)).cast("long")
        .alias("units_adjusted"),
    )
