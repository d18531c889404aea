"""The Spark session every Spark entry point uses (streaming app, Dagster, tests): one set of
settings."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def spark_conf(app_name: str, master: str = "local[*]", shuffle_partitions: int = 4
               ) -> dict[str, str]:
    """The settings of every Spark session of the platform (streaming app, Dagster, tests): UTC,
    few shuffle partitions (the data per batch is small), Arrow, and Spark's Kafka connector on
    the classpath (``spark.jars``: in a cluster the driver serves the jars to the executors, so
    no worker needs them installed)."""
    from globalmart.jvm import SPARK_KAFKA_CONNECTOR, jars

    return {
        "spark.app.name": app_name,
        "spark.master": master,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        "spark.jars": ",".join(str(jar) for jar in jars(SPARK_KAFKA_CONNECTOR)),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # a deep stack: Java regexes over long Python error messages overflow the default one
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -Xss16m",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }


def build_spark_session(app_name: str, master: str = "local[*]", shuffle_partitions: int = 4,
                        extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A session with ``spark_conf`` and ``extra_conf`` (an existing session is reused)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in {**spark_conf(app_name, master, shuffle_partitions),
                       **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
