"""Sales endpoints against expectations computed from the source transactions."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from . import dataset as ds  # noqa: TID252
from . import expect  # noqa: TID252


@pytest.mark.parametrize("period", ["today", "week", "month"])
def test_summary_counts_each_order_once(client, served, period):
    response = client.get("/api/v1/sales/summary", params={"period": period})
    assert response.status_code == 200, response.text
    body = response.json()
    txns = expect.txns_since(served.data, expect.since(period))
    revenue = float(sum(t.revenue for t in txns))
    assert body["period"] == period
    assert body["metrics"]["transaction_count"] == len(txns)
    assert body["metrics"]["total_revenue"] == pytest.approx(revenue, abs=0.01)
    assert body["metrics"]["units_sold"] == sum(t.units for t in txns)
    assert body["metrics"]["avg_transaction_value"] == pytest.approx(revenue / len(txns),
                                                                      abs=0.01)
    assert body["metrics"]["min_transaction"] == pytest.approx(float(min(t.revenue
                                                                         for t in txns)))
    assert body["metrics"]["max_transaction"] == pytest.approx(float(max(t.revenue
                                                                         for t in txns)))
    assert body["data_as_of"] is not None
    assert response.headers["x-data-as-of"] == body["data_as_of"].replace("Z", "+00:00")


def test_metrics_filters_and_pages(client, served):
    data = served.data
    day = data.now.date()
    params = {"start_date": str(day), "end_date": str(day), "country": "USA", "limit": 7}
    response = client.get("/api/v1/sales/metrics", params=params)
    first = response.json()
    expected_windows = {
        (ds.minute(t.event_time), line.category)
        for t in data.transactions if t.country == "USA" and t.event_time.date() == day
        for line in t.lines
    }
    assert int(response.headers["x-total-count"]) == len(expected_windows)
    assert response.headers["x-data-as-of"]
    assert len(first) == 7
    starts = [item["window_start"] for item in first]
    assert starts == sorted(starts, reverse=True)
    assert {item["country"] for item in first} == {"USA"}
    # Following the Link headers (RFC 8288) visits pages that do not overlap and together hold
    # every window; the last page has no next link.
    seen: list[tuple] = []
    url: str | None = client.get("/api/v1/sales/metrics", params={**params, "limit": 50}).url
    pages = 0
    while url is not None:
        page = client.get(str(url))
        seen += [(item["window_start"], item["category"]) for item in page.json()]
        url = page.links.get("next", {}).get("url")
        pages += 1
    assert len(seen) == len(set(seen)) == len(expected_windows)
    assert pages == -(-len(expected_windows) // 50)


def test_metrics_window_values(client, served):
    data = served.data
    txn = max(data.transactions, key=lambda t: t.event_time)
    category = txn.lines[0].category
    start = ds.minute(txn.event_time)
    same = [t for t in data.transactions
            if ds.minute(t.event_time) == start and t.country == txn.country]
    amount = sum(line.amount for t in same for line in t.lines if line.category == category)
    count = len({t.transaction_id for t in same for line in t.lines if line.category == category})
    body = client.get("/api/v1/sales/metrics", params={
        "category": category, "country": txn.country, "limit": 1}).json()
    item = body[0]
    assert item["category"] == category and item["country"] == txn.country
    assert item["total_amount"] == pytest.approx(float(amount), abs=0.01)
    assert item["transaction_count"] == count


def test_metrics_date_range_excludes_other_days(client, served):
    old_day = served.data.now.date() - timedelta(days=400)
    response = client.get("/api/v1/sales/metrics",
                          params={"start_date": str(old_day), "end_date": str(old_day)})
    assert response.json() == [] and response.headers["x-total-count"] == "0"
    assert "link" not in response.headers


def test_by_country(client, served):
    body = client.get("/api/v1/sales/by-country", params={"period": "week"}).json()
    expected = expect.revenue_by_country(served.data, expect.since("week"))
    got = {c["country"]: c for c in body["countries"]}
    assert set(got) == set(expected)
    for country, (revenue, orders, units) in expected.items():
        assert got[country]["revenue"] == pytest.approx(float(revenue), abs=0.01)
        assert got[country]["orders"] == orders
        assert got[country]["units_sold"] == units
    assert got["UK"]["iso3"] == "GBR" and got["Germany"]["iso3"] == "DEU"
    revenues = [c["revenue"] for c in body["countries"]]
    assert revenues == sorted(revenues, reverse=True)


def test_by_category(client, served):
    body = client.get("/api/v1/sales/by-category", params={"period": "month"}).json()
    expected = expect.revenue_by_category(served.data, expect.since("month"))
    got = {c["category"]: c for c in body["categories"]}
    assert set(got) == set(expected)
    for category, (revenue, transactions, units) in expected.items():
        assert got[category]["revenue"] == pytest.approx(float(revenue), abs=0.01)
        assert got[category]["transaction_count"] == transactions
        assert got[category]["units_sold"] == units
    assert sum(c["share"] for c in body["categories"]) == pytest.approx(1.0, abs=0.001)


def test_timeline_per_minute(client, served):
    body = client.get("/api/v1/sales/timeline", params={"minutes": 60}).json()
    start = ds.minute(expect.datetime.now(expect.UTC)) - timedelta(minutes=59)
    per_minute: dict = {}
    for txn in expect.txns_since(served.data, start):
        key = ds.minute(txn.event_time)
        per_minute[key] = per_minute.get(key, 0) + txn.revenue
    assert len(body["points"]) == len(per_minute)
    for point in body["points"]:
        key = expect.datetime.fromisoformat(point["window_start"])
        assert point["revenue"] == pytest.approx(float(per_minute[key]), abs=0.01)


def test_summary_says_how_many_late_transactions_its_days_leave_out(client, served):
    today = served.data.now.date()
    ledger = {today: (3, "123.45"), today - timedelta(days=40): (5, "999.00")}
    with psycopg.connect(served.url) as conn:
        for day, (late, revenue) in ledger.items():
            conn.execute("INSERT INTO stream_day_ledger (event_date, late_transactions, "
                         "late_revenue) VALUES (%s, %s, %s)", (day, late, revenue))
    try:
        body = client.get("/api/v1/sales/summary", params={"period": "today"}).json()
    finally:
        with psycopg.connect(served.url) as conn:
            conn.execute("DELETE FROM stream_day_ledger")
    assert body["left_out_late"] == {"transaction_count": 3, "total_revenue": 123.45}
