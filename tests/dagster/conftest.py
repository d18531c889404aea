"""Fixtures of the Dagster tests: resources on the real PostgreSQL, a tmp lake, real Spark, and
one day of events from the seeded generator built through the whole graph once per module that
asks for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg.rows import dict_row

from globalmart.settings import PlatformSettings
from globalmart_dagster.definitions import build_definitions
from globalmart_dagster.settings import DagsterSettings
from globalmart_dagster.wiring import build_resources
from tests.dagster.dataset import (
    Day,
    generated_day,
    write_raw_layer,
    write_stream_ledger,
)

DAY = date(2026, 11, 20)


def make_resources(url: str, lake: Path | str, bootstrap: str = "127.0.0.1:1",
                   **settings: Any) -> dict[str, Any]:
    """The code location's resources pointed at test services."""
    platform = PlatformSettings(database_url=url, lake_path=str(lake),
                                kafka_bootstrap_servers=bootstrap)
    values = {"spark_master": "local[2]", "shuffle_partitions": 2, **settings}
    return build_resources(platform, DagsterSettings(**values))


@dataclass
class Built:
    """A database and lake with one day built through the graph."""

    url: str
    lake: Path
    data: Day
    defs: dg.Definitions
    result: dg.ExecuteInProcessResult
    customers: dict[str, dict]  # source.customers by user_id when the day was built
    products: set[str]  # source.products ids when the day was built

    def run_day(self, day: date = DAY) -> dg.ExecuteInProcessResult:
        """Run the daily job for ``day`` again."""
        job = self.defs.resolve_job_def("daily_warehouse_job")
        return job.execute_in_process(partition_key=day.isoformat(), raise_on_error=False)


@pytest.fixture(scope="module")
def built(make_database, spark, tmp_path_factory) -> Built:
    """One generated day (raw layer, source tables, stream metrics) and a run of the daily job.

    Two buyers and one product sold are removed from the source tables, so the warehouse must
    infer them."""
    url = make_database()
    lake = tmp_path_factory.mktemp("lake")
    data, write_sources = generated_day(DAY)
    write_raw_layer(lake, data)
    write_sources(url)
    write_stream_ledger(url, data)
    buyers = sorted({tx["user_id"] for tx in data.unique("transactions")})
    sold = sorted({i["product_id"] for tx in data.unique("transactions") for i in tx["items"]})
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM source.customers WHERE user_id = ANY(%s)", (buyers[:2],))
        conn.execute("DELETE FROM source.products WHERE product_id = %s", (sold[0],))
        with conn.cursor(row_factory=dict_row) as cur:
            customers = {r["user_id"]: r for r in cur.execute("SELECT * FROM source.customers")}
        products = {r[0] for r in conn.execute("SELECT product_id FROM source.products")}
    defs = build_definitions(make_resources(url, lake))
    job = defs.resolve_job_def("daily_warehouse_job")
    result = job.execute_in_process(partition_key=DAY.isoformat(), raise_on_error=False)
    return Built(url, lake, data, defs, result, customers, products)
