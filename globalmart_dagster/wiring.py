"""How the resources are wired: the one place that reads the environment for them.

Secrets never appear in the UI: when ``GLOBALMART_DATABASE_URL`` or ``GLOBALMART_MONGODB_URL`` is
set, the resource reads it through ``dg.EnvVar`` at run time; unset, the embedded runtime's URL
(no password) is used.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import dagster as dg
from dagster_pyspark import PySparkResource

from globalmart.settings import PlatformSettings
from globalmart.spark import spark_conf
from globalmart_dagster.resources import (
    DayBuildsResource,
    KafkaResource,
    LakeResource,
    MongoMartIOManager,
    PostgresMartIOManager,
    WarehouseResource,
)
from globalmart_dagster.settings import DagsterSettings


def spark_config(settings: DagsterSettings) -> dict[str, Any]:
    """Spark settings of the warehouse builds: the platform's (``globalmart.spark.spark_conf``)
    on the configured master."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return dict(spark_conf("globalmart-dagster", settings.spark_master,
                           settings.shuffle_partitions))


def _secret(variable: str, fallback: str | None) -> Any:
    return dg.EnvVar(variable) if os.environ.get(variable) else fallback


def build_resources(platform: PlatformSettings | None = None,
                    settings: DagsterSettings | None = None) -> dict[str, Any]:
    """The resources of the code location, keyed as the assets, checks and sensors ask."""
    platform = platform or PlatformSettings()
    settings = settings or DagsterSettings()
    database_url = _secret("GLOBALMART_DATABASE_URL", platform.db_url)
    if settings.mart_backend == "mongodb":
        mongodb_url = _secret("GLOBALMART_MONGODB_URL", settings.mongodb_url)
        if mongodb_url is None:
            raise ValueError("GLOBALMART_DAGSTER_MART_BACKEND=mongodb needs GLOBALMART_MONGODB_URL")
        mart_io_manager: Any = MongoMartIOManager(mongodb_url=mongodb_url,
                                                  database=settings.mongodb_database)
    else:
        mart_io_manager = PostgresMartIOManager(database_url=database_url)
    return {
        "warehouse": WarehouseResource(database_url=database_url),
        "lake": LakeResource(path=platform.lake),
        "kafka": KafkaResource(bootstrap_servers=platform.bootstrap_servers),
        "pyspark": PySparkResource(spark_config=spark_config(settings)),
        "mart_io_manager": mart_io_manager,
        "day_builds": DayBuildsResource(day_close_delay_minutes=settings.day_close_delay_minutes,
                                        max_days_per_tick=settings.max_days_per_tick),
    }
