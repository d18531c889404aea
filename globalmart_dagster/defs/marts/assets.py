"""Marts read by the API and Grafana, with the seed's field names. Each asset queries the
warehouse for its inputs, computes with the pure functions of ``transforms.py`` and returns a
DataFrame; the mart IO manager (PostgreSQL ``marts.*`` or MongoDB ``globalmart_dw.*``) stores it.
"""

from collections.abc import Callable
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from globalmart_dagster.constants import (
    DAILY_TREND_DAYS,
    MARTS_PREFIX,
    MONTHLY_TREND_MONTHS,
    PRODUCT_WINDOW_DAYS,
    RFM_LOOKBACK_DAYS,
    WEEKLY_TREND_WEEKS,
)
from globalmart_dagster.defs.marts import transforms
from globalmart_dagster.defs.warehouse import assets as warehouse_assets
from globalmart_dagster.partitions import daily_partitions
from globalmart_dagster.resources import REPLACE_BY, WarehouseResource

MART_IO_MANAGER = "mart_io_manager"

# A mart must be rebuilt every day by 03:00 UTC (the sensor builds the day that closed at
# midnight once the raw layer holds all of it).
DAILY_MART_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 3 * * *",
                                               lower_bound_delta=timedelta(hours=24))

CUSTOMER_STATS_SQL = """
SELECT user_id, max(event_date) AS last_purchase_date,
       count(DISTINCT transaction_id) AS frequency, sum(line_amount) AS monetary
FROM warehouse.fact_sales
WHERE event_date > %(day)s::date - %(lookback)s::int AND event_date <= %(day)s::date
GROUP BY user_id
"""

PRODUCT_SALES_SQL = """
SELECT f.product_id, p.product_name, p.category, sum(f.quantity) AS units_sold,
       sum(f.line_amount) AS total_revenue, count(DISTINCT f.transaction_id) AS orders
FROM warehouse.fact_sales f JOIN warehouse.dim_product p ON p.product_id = f.product_id
WHERE f.event_date > %(day)s::date - %(window)s::int AND f.event_date <= %(day)s::date
GROUP BY f.product_id, p.product_name, p.category
"""

DAILY_SALES_SQL = """
SELECT event_date AS date, sum(line_amount) AS revenue,
       count(DISTINCT transaction_id) AS orders
FROM warehouse.fact_sales
WHERE event_date > %(end)s::date - %(days)s::int AND event_date <= %(end)s::date
GROUP BY event_date ORDER BY event_date
"""


def _per_day(context: dg.AssetExecutionContext,
             build: Callable[[date], pd.DataFrame]) -> pd.DataFrame:
    """One snapshot per day of the run (several in a single-run backfill), concatenated."""
    frames = [build(date.fromisoformat(key)) for key in context.partition_keys]
    non_empty = [f for f in frames if not f.empty]
    if not non_empty:
        return frames[0]
    return pd.concat(non_empty, ignore_index=True)


def _mart(**kwargs):
    return dg.asset(key_prefix=MARTS_PREFIX, io_manager_key=MART_IO_MANAGER, **kwargs)


@_mart(partitions_def=daily_partitions, deps=[warehouse_assets.fact_sales], kinds={"pandas"},
       metadata={REPLACE_BY: "analysis_date"}, freshness_policy=DAILY_MART_FRESHNESS,
       backfill_policy=warehouse_assets.SINGLE_RUN)
def customer_rfm_analysis(context: dg.AssetExecutionContext,
                          warehouse: WarehouseResource) -> pd.DataFrame:
    """Customer segments by RFM as of the partition's day, over the last 365 days of sales:
    recency (days since the last purchase), frequency (transactions) and monetary (revenue),
    each scored 1..5 by quintile (ties broken deterministically), and one of eight segments
    (Champions, Loyal Customers, Potential Loyalists, New Customers, At Risk, Cannot Lose
    Them, Hibernating, Lost) from the segment grid. One snapshot per ``analysis_date``."""
    result = _per_day(context, lambda day: transforms.rfm_analysis(
        warehouse.query_frame(CUSTOMER_STATS_SQL, {"day": day, "lookback": RFM_LOOKBACK_DAYS}),
        day))
    context.add_output_metadata({
        "customers": len(result),
        "segments": dg.MetadataValue.json(result["rfm_segment"].value_counts().to_dict()),
    })
    return result


@_mart(partitions_def=daily_partitions, kinds={"pandas"},
       deps=[warehouse_assets.fact_sales, warehouse_assets.dim_product],
       metadata={REPLACE_BY: "analysis_date"}, freshness_policy=DAILY_MART_FRESHNESS,
       backfill_policy=warehouse_assets.SINGLE_RUN)
def product_performance(context: dg.AssetExecutionContext,
                        warehouse: WarehouseResource) -> pd.DataFrame:
    """Product performance over the 30 days ending on the partition's day: units sold,
    revenue, average selling price, a 0..100 performance score (revenue 50 %, units 30 %,
    orders 20 %, each relative to the category's best product) and the rank in the category.
    One snapshot per ``analysis_date``."""
    result = _per_day(context, lambda day: transforms.product_performance(
        warehouse.query_frame(PRODUCT_SALES_SQL, {"day": day, "window": PRODUCT_WINDOW_DAYS}),
        day))
    context.add_output_metadata({"products": len(result)})
    return result


@_mart(deps=[warehouse_assets.fact_sales], kinds={"pandas"}, freshness_policy=DAILY_MART_FRESHNESS,
       backfill_policy=warehouse_assets.SINGLE_RUN)
def sales_trends(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> pd.DataFrame:
    """Sales trends up to the latest day in the warehouse: daily for 90 days (with a 7-day
    moving average and day-over-day growth), weekly for 26 ISO weeks (4-week moving average)
    and monthly for 24 months (3-month moving average); revenue, orders and average order
    value. Rebuilt by every run that builds or rebuilds a day (the daily build, the latest marts
after late events, a backfill), so it always reflects the warehouse."""
    end = warehouse.scalar("SELECT max(event_date) FROM warehouse.fact_sales")
    if end is None:
        context.log.info("fact_sales is empty; sales_trends is emptied")
        return transforms.sales_trends(pd.DataFrame(columns=["date", "revenue", "orders"]),
                                       date.today(), DAILY_TREND_DAYS, WEEKLY_TREND_WEEKS,
                                       MONTHLY_TREND_MONTHS)
    history_days = (MONTHLY_TREND_MONTHS + 1) * 31
    daily = warehouse.query_frame(DAILY_SALES_SQL, {"end": end, "days": history_days})
    result = transforms.sales_trends(daily, end, DAILY_TREND_DAYS, WEEKLY_TREND_WEEKS,
                                     MONTHLY_TREND_MONTHS)
    context.add_output_metadata({"through": str(end), "rows": len(result)})
    return result


MARTS = [customer_rfm_analysis, product_performance, sales_trends]
