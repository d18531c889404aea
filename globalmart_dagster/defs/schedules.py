"""Schedules: the daily build at 02:00 UTC for yesterday's partition, sales trends hourly."""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.defs.jobs import daily_warehouse_job, sales_trends_job

daily_warehouse_schedule = dg.build_schedule_from_partitioned_job(
    daily_warehouse_job,
    name="daily_warehouse_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 02:00 UTC, build yesterday's partition (a safety net behind the Kafka "
                "sensor, which usually builds a day minutes after midnight).",
)

hourly_sales_trends_schedule = dg.ScheduleDefinition(
    name="hourly_sales_trends_schedule",
    job=sales_trends_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, rebuild the sales trends.",
)

SCHEDULES = [daily_warehouse_schedule, hourly_sales_trends_schedule]
