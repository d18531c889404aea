"""Mart endpoints: only the latest snapshot is served."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from . import expect  # noqa: TID252


def test_segments_latest_snapshot_sorted(client, served):
    rows = expect.latest(served.data.rfm)
    response = client.get("/api/v1/customers/segments",
                          params={"segment": "Champions", "limit": 5})
    body = response.json()
    champions = sorted((r for r in rows if r[8] == "Champions"), key=lambda r: (-r[4], r[1]))
    assert int(response.headers["x-total-count"]) == len(champions)
    assert [item["user_id"] for item in body] == [r[1] for r in champions[:5]]
    assert {item["analysis_date"] for item in body} == {str(served.data.latest_analysis_date)}
    assert all(item["rfm_segment"] == "Champions" for item in body)
    assert response.headers["x-data-as-of"]


def test_segment_distribution(client, served):
    rows = expect.latest(served.data.rfm)
    body = client.get("/api/v1/customers/segments/distribution").json()
    counts = Counter(r[8] for r in rows)
    totals: dict = defaultdict(float)
    for r in rows:
        totals[r[8]] += float(r[4])
    got = {s["segment"]: s for s in body["segments"]}
    assert {k: v["customer_count"] for k, v in got.items()} == dict(counts)
    for segment, total in totals.items():
        assert got[segment]["total_segment_value"] == pytest.approx(total, abs=0.01)
        assert got[segment]["avg_customer_value"] == pytest.approx(total / counts[segment],
                                                                   abs=0.01)


@pytest.mark.parametrize("sort_by", ["total_revenue", "units_sold", "performance_score"])
def test_product_performance_sorting(client, served, sort_by):
    rows = expect.latest(served.data.product_perf)
    column = {"units_sold": 4, "total_revenue": 5, "performance_score": 7}[sort_by]
    category = rows[0][3]
    expected = sorted((r for r in rows if r[3] == category), key=lambda r: (-r[column], r[1]))
    response = client.get("/api/v1/products/performance",
                          params={"category": category, "sort_by": sort_by, "limit": 4})
    assert [item["product_id"] for item in response.json()] == [r[1] for r in expected[:4]]
    assert int(response.headers["x-total-count"]) == len(expected)


def test_top_performers(client, served):
    rows = sorted(expect.latest(served.data.product_perf), key=lambda r: (-r[5], r[1]))
    body = client.get("/api/v1/products/top-performers", params={"top_n": 3}).json()
    assert [p["product_id"] for p in body["top_products"]] == [r[1] for r in rows[:3]]
    assert body["top_products"][0]["total_revenue"] == pytest.approx(float(rows[0][5]))


@pytest.mark.parametrize("trend_type", ["daily", "weekly", "monthly"])
def test_trends(client, served, trend_type):
    rows = sorted((r for r in served.data.trends if r[0] == trend_type), key=lambda r: r[1],
                  reverse=True)
    body = client.get("/api/v1/trends/sales", params={"trend_type": trend_type,
                                                       "limit": 5}).json()
    assert [t["date"] for t in body["trends"]] == [str(r[1]) for r in rows[:5]]
    assert body["trends"][0]["revenue"] == pytest.approx(float(rows[0][2]))
    assert body["trends"][-1]["growth"] == pytest.approx(rows[4][6])
