"""Schedules: the sales trends hourly. (The daily builds are the Kafka sensor's: a day is built
once the raw layer holds all of it, which no clock can tell.)"""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.defs.jobs import sales_trends_job

hourly_sales_trends_schedule = dg.ScheduleDefinition(
    name="hourly_sales_trends_schedule",
    job=sales_trends_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, rebuild the sales trends.",
)

SCHEDULES = [hourly_sales_trends_schedule]
