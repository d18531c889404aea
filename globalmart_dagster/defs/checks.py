"""Asset checks: keys of every warehouse table, the facts' foreign keys, reconciliation of each
day's revenue (warehouse = raw layer = stream accepted + left out as late), and the RFM mart's
invariants.

Key and foreign-key checks are blocking: a table that fails them must not feed the marts. The
checks of the daily tables (the facts, the RFM mart) are partitioned by day like their tables:
each day keeps its own result (the UI shows a status per day), also after a single-run backfill
of a range. Run without a partition (e.g. from the asset's Checks tab) they look at the whole
table.
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from psycopg import sql

from globalmart.vocabulary import RECONCILIATION_CHECK, SEGMENTS
from globalmart_dagster.defs.marts import assets as mart_assets
from globalmart_dagster.defs.warehouse import assets as warehouse_assets
from globalmart_dagster.partitions import daily_partitions
from globalmart_dagster.resources import LakeResource, MartIOManager, WarehouseResource

# table asset, table name, key columns, partitioned by event_date
KEYED_TABLES: list[tuple[dg.AssetsDefinition, str, tuple[str, ...], bool]] = [
    (warehouse_assets.dim_date, "dim_date", ("date_key",), False),
    (warehouse_assets.dim_customer, "dim_customer", ("customer_key",), False),
    (warehouse_assets.dim_product, "dim_product", ("product_id",), False),
    (warehouse_assets.dim_location, "dim_location", ("location_key",), False),
    (warehouse_assets.fact_sales, "fact_sales", ("transaction_id", "line_number"), True),
    (warehouse_assets.fact_sessions, "fact_sessions", ("event_date", "session_id"), True),
]

# fact, column, dimension, dimension column
FOREIGN_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "fact_sales": [("date_key", "dim_date", "date_key"),
                   ("customer_key", "dim_customer", "customer_key"),
                   ("product_id", "dim_product", "product_id"),
                   ("location_key", "dim_location", "location_key")],
    "fact_sessions": [("date_key", "dim_date", "date_key"),
                      ("customer_key", "dim_customer", "customer_key")],
}


def run_days(context: dg.AssetCheckExecutionContext) -> list[date] | None:
    """The days of a partitioned run (one, or several in a single-run backfill); None when the
    check runs without partitions."""
    if context.has_partition_key or context.has_partition_key_range:
        return [date.fromisoformat(key) for key in context.partition_keys]
    return None


Evaluation = dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output
Evaluate = Callable[[list[date] | None], dg.AssetCheckResult]
CheckFunction = Callable[..., Iterator[Evaluation]]


def _check(*, daily: bool, **kwargs: Any) -> Callable[[CheckFunction], dg.AssetChecksDefinition]:
    """``dg.asset_check`` for a blocking check whose function yields ``check_results``;
    partitioned by day on a daily table, so each day keeps its own result. (Dagster runs a
    check function that yields; its type hints only name one returned result.)"""
    decorator: Any = dg.asset_check(
        blocking=True, partitions_def=daily_partitions if daily else None, **kwargs)
    return decorator


def check_results(context: dg.AssetCheckExecutionContext,
                  evaluate: Evaluate) -> Iterator[Evaluation]:
    """The results of a check: ``evaluate(days)`` judges the given days (None: the whole
    table). An unpartitioned check, a run of one day or of no partition yields that one
    result, and Dagster files it under the run's day if the check is daily. A range run of a
    daily check (a single-run backfill) yields one evaluation per day, filed under its day and
    the day's latest materialization: Dagster 1.13 files a result of a range run under no day
    at all."""
    [spec] = context.check_specs
    days = run_days(context) if spec.partitions_def is not None else None
    if days is None or len(days) == 1:
        yield evaluate(days)
        return
    for day in days:
        result = evaluate([day])
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key, check_name=spec.name, passed=result.passed,
            metadata=result.metadata, severity=result.severity,
            description=result.description, blocking=spec.blocking, partition=day.isoformat(),
            target_materialization_data=_latest_materialization(context, spec.asset_key, day))
    [output] = context.op_def.output_defs
    yield dg.Output(None, output_name=output.name)


def _latest_materialization(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey,
                            day: date) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization a check of ``day`` judged (what Dagster records for a one-day run;
    the UI shows a day's check status only while it targets the day's latest
    materialization)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day.isoformat()]),
        limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id,
        timestamp=records[0].timestamp)


def _day_filter(days: list[date] | None, alias: str | None = None) -> tuple[sql.Composable, tuple]:
    """``WHERE``-clause fragment restricting a daily fact to ``days`` (all rows for None)."""
    if days is None:
        return sql.SQL("true"), ()
    column = sql.Identifier(alias, "event_date") if alias else sql.Identifier("event_date")
    return sql.SQL("{} = ANY(%s)").format(column), (days,)


def _result(violations: int, what: str, days: list[date] | None,
            **metadata) -> dg.AssetCheckResult:
    scope = (f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])) if days else "all rows"
    return dg.AssetCheckResult(
        passed=violations == 0,
        metadata={"violations": violations, "scope": scope, **metadata},
        description=f"{violations} {what}" if violations else None,
    )


def _key_checks(asset: dg.AssetsDefinition, table: str, keys: Sequence[str],
                partitioned: bool) -> list[dg.AssetChecksDefinition]:
    """Unique and non-null keys; per day on a daily fact, over the whole table on a
    dimension."""
    table_id = sql.Identifier("warehouse", table)
    key_ids = sql.SQL(", ").join(map(sql.Identifier, keys))
    any_null = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in keys)
    key_names = ", ".join(keys)

    @_check(daily=partitioned, asset=asset, name="unique_keys",
            description=f"No two rows of {table} share ({key_names}).")
    def unique_keys(context: dg.AssetCheckExecutionContext,
                    warehouse: WarehouseResource) -> Iterator[Evaluation]:
        def evaluate(days: list[date] | None) -> dg.AssetCheckResult:
            where, params = _day_filter(days)
            query = sql.SQL(
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {t} WHERE {w} "
                "GROUP BY {k} HAVING count(*) > 1) d"
            ).format(t=table_id, w=where, k=key_ids)
            extra = int(warehouse.scalar(query, params))
            return _result(extra, f"duplicate rows on ({key_names})", days)
        yield from check_results(context, evaluate)

    @_check(daily=partitioned, asset=asset, name="no_null_keys",
            description=f"No row of {table} has a null in ({key_names}).")
    def no_null_keys(context: dg.AssetCheckExecutionContext,
                     warehouse: WarehouseResource) -> Iterator[Evaluation]:
        def evaluate(days: list[date] | None) -> dg.AssetCheckResult:
            where, params = _day_filter(days)
            query = sql.SQL("SELECT count(*) FROM {t} WHERE ({w}) AND ({n})").format(
                t=table_id, w=where, n=any_null)
            nulls = int(warehouse.scalar(query, params))
            return _result(nulls, f"rows with a null key in ({key_names})", days)
        yield from check_results(context, evaluate)

    return [unique_keys, no_null_keys]


def _foreign_key_check(asset: dg.AssetsDefinition, table: str) -> dg.AssetChecksDefinition:
    references = FOREIGN_KEYS[table]
    listing = ", ".join(f"{c} → {d}.{dc}" for c, d, dc in references)

    @_check(daily=True, asset=asset, name="foreign_keys_exist",
            description=f"Every key of {table} exists in its dimension ({listing}).")
    def foreign_keys_exist(context: dg.AssetCheckExecutionContext,
                           warehouse: WarehouseResource) -> Iterator[Evaluation]:
        def evaluate(days: list[date] | None) -> dg.AssetCheckResult:
            where, params = _day_filter(days, alias="f")
            orphans: dict[str, int] = {}
            for column, dim, dim_column in references:
                query = sql.SQL(
                    "SELECT count(*) FROM {t} f WHERE ({w}) AND NOT EXISTS "
                    "(SELECT 1 FROM {d} x WHERE x.{dc} = f.{c})"
                ).format(t=sql.Identifier("warehouse", table), w=where,
                         d=sql.Identifier("warehouse", dim), dc=sql.Identifier(dim_column),
                         c=sql.Identifier(column))
                orphans[column] = int(warehouse.scalar(query, params))
            total = sum(orphans.values())
            return _result(total, "rows whose key is missing from its dimension", days,
                           orphans=dg.MetadataValue.json(orphans))
        yield from check_results(context, evaluate)

    return foreign_keys_exist


@dg.asset_check(asset=warehouse_assets.dim_customer, name="one_current_version", blocking=True,
                description="Each customer has exactly one current version, and versions of a "
                            "customer do not overlap in time.")
def one_current_version(context: dg.AssetCheckExecutionContext,
                        warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Type-2 history invariants of dim_customer."""
    bad = int(warehouse.scalar(
        "SELECT (SELECT count(*) FROM (SELECT user_id FROM warehouse.dim_customer "
        "        GROUP BY user_id HAVING count(*) FILTER (WHERE is_current) <> 1) c) "
        "     + (SELECT count(*) FROM warehouse.dim_customer a JOIN warehouse.dim_customer b "
        "        ON a.user_id = b.user_id AND a.customer_key < b.customer_key "
        "        AND a.valid_from < b.valid_to AND b.valid_from < a.valid_to)"
    ))
    return _result(bad, "customers without exactly one current version or with overlapping "
                        "versions", None)


def raw_day_totals(transactions: pa.Table) -> tuple[int, Decimal]:
    """Transactions and revenue (Σ quantity × unit price of their lines) of one day of the raw
    layer, each event counted once by ``event_id``."""
    if transactions.num_rows == 0:
        return 0, Decimal("0.00")
    frame = transactions.select(["event_id", "items"]).to_pandas()
    frame = frame.drop_duplicates("event_id")
    revenue = sum((line["unit_price"] * line["quantity"]
                   for items in frame["items"] for line in items), Decimal("0.00"))
    return len(frame), revenue


WAREHOUSE_DAY_SQL = """
SELECT count(DISTINCT transaction_id) AS transactions, coalesce(sum(line_amount), 0) AS revenue
FROM warehouse.fact_sales WHERE event_date = %(day)s
"""
LEDGER_SQL = """
SELECT accepted_transactions + late_transactions AS transactions,
       accepted_revenue + late_revenue AS revenue, late_transactions, late_revenue
FROM public.stream_day_ledger WHERE event_date = %(day)s
"""


@_check(daily=True, asset=warehouse_assets.fact_sales, name=RECONCILIATION_CHECK,
        description="Per day, fact_sales holds exactly the raw layer's transactions and "
                    "revenue, and exactly what the stream accepted into the real-time tables "
                    "plus what it left out as late (its day ledger), to the cent.")
def revenue_reconciles(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                       lake: LakeResource) -> Iterator[Evaluation]:
    """Like with like: warehouse = raw layer = stream accepted + stream left out. Passes after a
    replay (late events are in all three) and fails on a real loss; blocking, so a day that does
    not reconcile does not reach the marts. Days the stream kept no ledger for (a raw layer
    written by other means) are compared with the raw layer only."""
    def evaluate(days: list[date] | None) -> dg.AssetCheckResult:
        if days is None:
            built = warehouse.query_frame("SELECT DISTINCT event_date FROM warehouse.fact_sales")
            days = sorted(built["event_date"].tolist())
        compared: dict[str, dict[str, Any]] = {}
        mismatches = 0
        for day in days:
            built = warehouse.rows(WAREHOUSE_DAY_SQL, {"day": day})[0]
            figures = {"warehouse": (int(built["transactions"]), Decimal(built["revenue"])),
                       "raw_layer": raw_day_totals(lake.read_raw_day("transactions", day))}
            ledger = warehouse.rows(LEDGER_SQL, {"day": day})
            if ledger:
                figures["stream"] = (int(ledger[0]["transactions"]),
                                     Decimal(ledger[0]["revenue"]))
            mismatches += len(set(figures.values())) > 1
            compared[str(day)] = {name: {"transactions": n, "revenue": str(r)}
                                  for name, (n, r) in figures.items()}
            if ledger:
                compared[str(day)]["stream_left_out_as_late"] = {
                    "transactions": int(ledger[0]["late_transactions"]),
                    "revenue": str(ledger[0]["late_revenue"])}
        return _result(mismatches, "days whose warehouse, raw layer and stream figures differ",
                       days, compared=dg.MetadataValue.json(compared))
    yield from check_results(context, evaluate)


@_check(daily=True, asset=mart_assets.customer_rfm_analysis, name="one_segment_per_customer",
        description="Every customer of the day's snapshot appears once, in one of the eight "
                    "segments, with r, f and m scores in 1..5.")
def one_segment_per_customer(context: dg.AssetCheckExecutionContext,
                             mart_io_manager: dg.ResourceParam[MartIOManager]
                             ) -> Iterator[Evaluation]:
    """RFM invariants, read through the mart's own storage (PostgreSQL or MongoDB)."""
    def evaluate(days: list[date] | None) -> dg.AssetCheckResult:
        name = mart_assets.customer_rfm_analysis.key.path[-1]
        frame = (mart_io_manager.read(name) if days is None
                 else mart_io_manager.read(name, "analysis_date", days))
        if frame.empty:
            return _result(0, "", days, customers=0)
        per_snapshot = frame.groupby(["analysis_date", "user_id"]).size()
        duplicates = int((per_snapshot > 1).sum())
        unknown = int((~frame["rfm_segment"].isin(SEGMENTS)).sum())
        out_of_range = int(sum(
            ((frame[c] < 1) | (frame[c] > 5) | frame[c].isna()).sum()
            for c in ("r_score", "f_score", "m_score")
        ))
        bad = duplicates + unknown + out_of_range
        return _result(bad, "RFM rows violating the invariants", days,
                       customers=len(frame), duplicates=duplicates, unknown_segment=unknown,
                       scores_out_of_range=out_of_range)
    yield from check_results(context, evaluate)


WAREHOUSE_CHECKS: list[dg.AssetChecksDefinition] = [
    *(c for asset, table, keys, partitioned in KEYED_TABLES
      for c in _key_checks(asset, table, keys, partitioned)),
    _foreign_key_check(warehouse_assets.fact_sales, "fact_sales"),
    _foreign_key_check(warehouse_assets.fact_sessions, "fact_sessions"),
    one_current_version,
    revenue_reconciles,
]
MART_CHECKS: list[dg.AssetChecksDefinition] = [one_segment_per_customer]
ALL_CHECKS = [*WAREHOUSE_CHECKS, *MART_CHECKS]
