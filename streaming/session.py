"""Building the Spark session every Spark entry point uses (streaming app, Dagster, tests)."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def build_spark_session(app_name: str, master: str = "local[*]", shuffle_partitions: int = 4,
                        extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A session in UTC with few shuffle partitions (the data per batch is small), with Spark's
    Kafka connector on its classpath (``spark.jars``: in a cluster the driver serves the jars
    to the executors, so no worker needs them installed)."""
    from globalmart.jvm import SPARK_KAFKA_CONNECTOR, jars

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.jars", ",".join(str(jar) for jar in jars(SPARK_KAFKA_CONNECTOR)))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # a deep stack: Java regexes over long Python error messages overflow the default one
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC -Xss16m")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
