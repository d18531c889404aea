"""Partition freshness of the daily facts: yesterday's partition must exist by 02:00 UTC.

``FreshnessPolicy`` (on the marts, see ``marts/assets.py``) is not partition-aware yet, so the
facts use Dagster's time-partition freshness checks and the sensor that evaluates them."""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.defs.warehouse import assets as warehouse_assets

FACT_DEADLINE_CRON = "0 2 * * *"

fact_freshness_checks = dg.build_time_partition_freshness_checks(
    assets=warehouse_assets.FACTS, deadline_cron=FACT_DEADLINE_CRON, timezone="UTC",
)

freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=fact_freshness_checks,
    name="freshness_checks_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
