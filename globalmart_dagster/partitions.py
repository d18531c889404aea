"""The daily partitioning shared by the raw layer, the facts and the daily marts (UTC days)."""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.settings import DagsterSettings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DagsterSettings().partitions_start.isoformat(), timezone="UTC"
)
