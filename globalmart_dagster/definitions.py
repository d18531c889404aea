"""The GlobalMart code location: gathers what lives in ``defs/`` (``workspace.yaml`` loads it).

Runs execute in process: one Spark session per run, and two cores shared by everything."""

from __future__ import annotations

from typing import Any

import dagster as dg

from globalmart_dagster.defs.alerts import ALERT_SENSORS
from globalmart_dagster.defs.checks import ALL_CHECKS
from globalmart_dagster.defs.freshness import fact_freshness_checks, freshness_checks_sensor
from globalmart_dagster.defs.jobs import JOBS
from globalmart_dagster.defs.marts.assets import MARTS
from globalmart_dagster.defs.raw.assets import RAW_ASSETS, SOURCE_ASSETS
from globalmart_dagster.defs.resources import build_resources
from globalmart_dagster.defs.sensors import SENSORS
from globalmart_dagster.defs.warehouse.assets import DIMENSIONS, FACTS


def build_definitions(resources: dict[str, Any]) -> dg.Definitions:
    """Everything of the code location with these resources (tests pass their own)."""
    return dg.Definitions(
        assets=[*SOURCE_ASSETS, *RAW_ASSETS, *DIMENSIONS, *FACTS, *MARTS],
        asset_checks=[*ALL_CHECKS, *fact_freshness_checks],
        jobs=JOBS,
        sensors=[*SENSORS, *ALERT_SENSORS, freshness_checks_sensor],
        resources=resources,
        executor=dg.in_process_executor,
    )


defs = build_definitions(build_resources())
