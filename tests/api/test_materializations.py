"""A mart's data_as_of is its last materialization in a real Dagster instance (PostgreSQL
storage) when the API is given that instance's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app

from .conftest import make_settings  # noqa: TID252


@pytest.fixture(scope="module")
def dagster_db(make_database, tmp_path_factory) -> str:
    """A Dagster instance on PostgreSQL that has materialized the RFM mart once."""
    url = make_database(migrate=False)
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["marts", "customer_rfm_analysis"]))
    return url


def test_mart_freshness_is_the_last_materialization(served, redis_url, cache_prefix, api_key,
                                                    dagster_db):
    settings = make_settings(served.url, redis_url, cache_prefix, dagster_database_url=dagster_db)
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        rfm = client.get("/api/v1/customers/segments/distribution").json()
        products = client.get("/api/v1/products/top-performers").json()
        pipeline = client.get("/api/v1/monitoring/pipeline").json()
    materialized = datetime.fromisoformat(rfm["data_as_of"])
    assert abs(datetime.now(UTC) - materialized) < timedelta(minutes=5)
    tables = {t["table"]: t for t in pipeline["tables"]}
    assert tables["marts.customer_rfm_analysis"]["data_as_of"] == rfm["data_as_of"]
    # Never materialized in this instance: the end of the latest analysed day instead.
    latest_day = datetime.fromisoformat(products["analysis_date"])
    assert datetime.fromisoformat(products["data_as_of"]) == (
        latest_day + timedelta(days=1)).replace(tzinfo=UTC)


def test_unreachable_dagster_falls_back(served, redis_url, cache_prefix, api_key):
    settings = make_settings(served.url, redis_url, cache_prefix,
                             dagster_database_url="postgresql://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        response = client.get("/api/v1/customers/segments/distribution")
    assert response.status_code == 200
    day = datetime.fromisoformat(response.json()["analysis_date"])
    assert datetime.fromisoformat(response.json()["data_as_of"]) == (
        day + timedelta(days=1)).replace(tzinfo=UTC)
