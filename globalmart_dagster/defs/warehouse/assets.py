"""The star-schema warehouse in PostgreSQL schema ``warehouse``.

Dimensions are refreshed on every run from the operational ``source`` tables; the facts are
daily partitions built with Spark from the raw Parquet layer and loaded so that a run replaces
exactly its day in one transaction (re-runs and backfills are idempotent).
"""

import functools
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from globalmart_dagster.constants import RAW_PREFIX, WAREHOUSE_PREFIX
from globalmart_dagster.defs.source import assets as source_assets
from globalmart_dagster.defs.warehouse import load, transforms
from globalmart_dagster.partitions import daily_partitions
from globalmart_dagster.resources import LakeResource, WarehouseResource

CALENDAR_HORIZON_DAYS = 366
# Every warehouse and mart asset: a date range is one run (UI backfills and
# `dagster asset materialize --partition-range` alike); dimensions are refreshed once per run.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# The folder's assets are keyed warehouse/<name>; their group and owners: this folder's defs.yaml.
warehouse_asset = functools.partial(dg.asset, key_prefix=WAREHOUSE_PREFIX)


def read_raw_days(spark: SparkSession, lake: LakeResource, topic: str,
                  days: list[date]) -> DataFrame:
    """Some days of a topic's raw layer (empty, with the right schema, when none is there).

    The streaming app writes each file under a hidden name (leading dot, which Spark skips) and
    renames it into place, so only complete files are read; the topic's root is read with a
    filter on the partition column, which prunes the other days. Spark gets the lake as a URL
    (``file:///…`` for a local one), which names the same directory on every executor."""
    from globalmart.lake import spark_url
    from globalmart.raw_layer import raw_schema

    schema = raw_schema(topic)
    if not any(lake.raw_day_files(topic, day)[0] for day in days):
        return spark.createDataFrame([], schema)
    return (spark.read.schema(schema).parquet(spark_url(lake.raw_path(topic)))
            .where(F.col("event_date").isin(days)))


def _arrow(frame: DataFrame, columns: list[str]) -> pa.Table:
    return frame.select(*columns).toArrow()


def _days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's days: one for a partition run, several for a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


@warehouse_asset(
    kinds={"postgres"}, tags={"layer": "dimension"},
    backfill_policy=SINGLE_RUN,
)
def dim_date(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Calendar dimension: one row per day from the first partition to a year ahead, keyed by
    ``date_key`` = YYYYMMDD, with ISO week, quarter and weekend flags."""
    start = daily_partitions.start.date()
    end = date.today() + timedelta(days=CALENDAR_HORIZON_DAYS)
    days = pa.Table.from_pandas(transforms.calendar(start, end), preserve_index=False)
    with warehouse.connect() as conn:
        rows = load.replace_dim_date(conn, days)
    return dg.MaterializeResult(metadata={"rows": rows, "first_day": str(start),
                                          "last_day": str(end)})


@warehouse_asset(
    kinds={"postgres"}, deps=[source_assets.SOURCE_CUSTOMERS], tags={"layer": "dimension"},
    backfill_policy=SINGLE_RUN,
)
def dim_customer(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Customers with their history (type 2): each change of name, e-mail, location or loyalty
    tier in ``source.customers`` closes the current version and opens a new one
    (``valid_from``/``valid_to``/``is_current``). Customers seen in events before the source knew
    them are inferred members, filled in place once the source has them."""
    with warehouse.connect() as conn:
        counts = load.merge_dim_customer(conn)
    rows = warehouse.scalar("SELECT count(*) FROM warehouse.dim_customer")
    return dg.MaterializeResult(metadata={**counts, "rows": rows})


@warehouse_asset(
    kinds={"postgres"}, deps=[source_assets.SOURCE_PRODUCTS], tags={"layer": "dimension"},
    backfill_policy=SINGLE_RUN,
)
def dim_product(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Products (latest values, type 1) from ``source.products``: name, category, brand and list
    price, plus inferred members for products seen only in events."""
    with warehouse.connect() as conn:
        upserted = load.upsert_dim_product(conn)
    rows = warehouse.scalar("SELECT count(*) FROM warehouse.dim_product")
    return dg.MaterializeResult(metadata={"upserted": upserted, "rows": rows})


@warehouse_asset(
    kinds={"postgres"}, deps=[source_assets.SOURCE_CUSTOMERS], tags={"layer": "dimension"},
    backfill_policy=SINGLE_RUN,
)
def dim_location(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Locations (country, city, currency): every city of the event contracts and of the
    customers, plus inferred members for cities seen only in transactions."""
    with warehouse.connect() as conn:
        upserted = load.upsert_dim_location(conn)
    rows = warehouse.scalar("SELECT count(*) FROM warehouse.dim_location")
    return dg.MaterializeResult(metadata={"upserted": upserted, "rows": rows})


DIMENSIONS = [dim_date, dim_customer, dim_product, dim_location]


@warehouse_asset(
    kinds={"spark", "postgres"}, partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    deps=[dg.AssetKey([RAW_PREFIX, "transactions"]), dim_date, dim_customer, dim_product,
          dim_location],
    tags={"layer": "fact"},
)
def fact_sales(context: dg.AssetExecutionContext, pyspark: PySparkResource,
               lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Sales at line-item grain: one row per transaction line of the day, with quantity, unit
    price and revenue (``line_amount``), the line's own category, and keys to the date, the
    customer version in effect at the event, the product and the location. Each day is
    computed by its own Spark job and replaced in its own transaction (a backfill run loops over
    its days, so the driver never holds more than a day)."""
    per_day = {}
    for day in _days(context):
        transactions = read_raw_days(pyspark.spark_session, lake, "transactions", [day])
        lines = _arrow(transforms.sales_lines(transactions), transforms.SALES_COLUMNS)
        with warehouse.connect() as conn:
            counts = load.replace_fact_sales_day(conn, day, lines)
        revenue = pc.sum(lines.column("line_amount")).as_py() or 0
        per_day[day.isoformat()] = {**counts, "revenue": float(revenue)}
        context.log.info(f"fact_sales {day}: {per_day[day.isoformat()]}")
    return dg.MaterializeResult(metadata=_summary(per_day))


@warehouse_asset(
    kinds={"spark", "postgres"}, partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    deps=[dg.AssetKey([RAW_PREFIX, t]) for t in ("product_views", "cart_events", "transactions")]
    + [dim_date, dim_customer],
    tags={"layer": "fact"},
)
def fact_sessions(context: dg.AssetExecutionContext, pyspark: PySparkResource,
                  lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Sessions per day: start, end and duration, page views and viewing time, cart adds,
    removes and updates, purchases, revenue and whether the session converted. A session that
    crosses midnight has one row per day. Each day is replaced in one transaction."""
    spark = pyspark.spark_session
    per_day = {}
    for day in _days(context):
        views, carts, transactions = (
            read_raw_days(spark, lake, topic, [day])
            for topic in ("product_views", "cart_events", "transactions"))
        sessions = _arrow(transforms.session_facts(views, carts, transactions),
                          transforms.SESSION_COLUMNS)
        with warehouse.connect() as conn:
            per_day[day.isoformat()] = load.replace_fact_sessions_day(conn, day, sessions)
        context.log.info(f"fact_sessions {day}: {per_day[day.isoformat()]}")
    return dg.MaterializeResult(metadata=_summary(per_day))


FACTS = [fact_sales, fact_sessions]


def _summary(per_day: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Materialization metadata: totals, plus the per-day figures when there are several."""
    totals: dict[str, Any] = {}
    for counts in per_day.values():
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    if len(per_day) > 1:
        totals["days"] = dg.MetadataValue.json(per_day)
    return totals
