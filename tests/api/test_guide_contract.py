"""A client written against the guide parses every answer of every guide endpoint, with the
guide's parameters, over real HTTP with the guide's ``X-API-Key`` header. The guide's models
live in ``tests/api/guide.py``, apart from the application."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from . import expect, guide  # noqa: TID252

ANSWERS: list[tuple[str, dict[str, Any], Any]] = [
    ("/health", {}, guide.Health),
    ("/api/v1/sales/metrics", {}, list[guide.SalesMetric]),
    ("/api/v1/sales/metrics", {"country": "USA", "limit": 5}, list[guide.SalesMetric]),
    ("/api/v1/sales/summary", {"period": "today"}, guide.SalesSummary),
    ("/api/v1/sales/summary", {"period": "week"}, guide.SalesSummary),
    ("/api/v1/sales/summary", {"period": "month"}, guide.SalesSummary),
    ("/api/v1/customers/segments", {}, list[guide.CustomerSegment]),
    ("/api/v1/customers/segments", {"segment": "Champions", "limit": 10},
     list[guide.CustomerSegment]),
    ("/api/v1/customers/segments/distribution", {}, guide.SegmentDistribution),
    ("/api/v1/products/performance", {}, list[guide.ProductPerformance]),
    ("/api/v1/products/performance", {"sort_by": "units_sold", "limit": 20},
     list[guide.ProductPerformance]),
    ("/api/v1/products/top-performers", {"top_n": 5}, guide.TopPerformers),
    ("/api/v1/monitoring/anomalies", {"hours": 24, "limit": 50},
     list[guide.TransactionAnomaly]),
    ("/api/v1/monitoring/dashboard", {}, guide.DashboardMetrics),
    ("/api/v1/trends/sales", {"trend_type": "daily", "limit": 30}, guide.Trends),
]


@pytest.fixture
def guide_client(live_server, api_key):
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": api_key}) as client:
        yield client


@pytest.mark.parametrize(("path", "params", "shape"), ANSWERS,
                         ids=[f"{p}?{'&'.join(f'{k}={v}' for k, v in q.items())}"
                              for p, q, _ in ANSWERS])
def test_the_guide_client_parses_the_answer(guide_client, path, params, shape):
    response = guide_client.get(path, params=params)
    assert response.status_code == 200, response.text
    parsed = TypeAdapter(shape).validate_python(response.json())
    rows = parsed if isinstance(parsed, list) else next(
        (v for v in vars(parsed).values() if isinstance(v, list)), [parsed])
    assert rows, f"{path} answered no rows: the contract is only tested on data"


def test_health_says_healthy_as_the_guides_end_to_end_script_expects(guide_client):
    assert "healthy" in guide_client.get("/health").text


def test_the_guide_client_category_filter(guide_client, served):
    sold = served.data.transactions[-1].lines[0].category
    ranked = expect.latest(served.data.product_perf)[0][3]
    for path, shape, category in (
            ("/api/v1/sales/metrics", guide.SalesMetric, sold),
            ("/api/v1/products/performance", guide.ProductPerformance, ranked)):
        rows = TypeAdapter(list[shape]).validate_python(
            guide_client.get(path, params={"category": category}).json())
        assert rows and {r.category for r in rows} == {category}, path
