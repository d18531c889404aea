"""Jobs: the daily build (dimensions, the day's facts, the marts) and the latest marts."""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.defs import freshness
from globalmart_dagster.defs.marts import assets as mart_assets
from globalmart_dagster.defs.warehouse import assets as warehouse_assets

# The freshness checks judge the latest partition against the clock; their own sensor runs
# them, so the builds (which may backfill old days) leave them out.
_FRESHNESS = dg.AssetSelection.checks(*freshness.fact_freshness_checks)

daily_warehouse_job = dg.define_asset_job(
    name="daily_warehouse_job",
    selection=dg.AssetSelection.assets(*warehouse_assets.DIMENSIONS, *warehouse_assets.FACTS,
                                        *mart_assets.MARTS) - _FRESHNESS,
    description="Refresh the dimensions, replace one day of the facts from the raw layer and "
                "rebuild the marts as of that day (partitioned by UTC day; safe to re-run).",
)

latest_marts_job = dg.define_asset_job(
    name="latest_marts_job",
    selection=dg.AssetSelection.assets(*mart_assets.MARTS),
    description="Rebuild the marts as of one day (the latest built day, after late events "
                "changed an earlier one) from the warehouse.",
)

JOBS = [daily_warehouse_job, latest_marts_job]
