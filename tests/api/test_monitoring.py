"""Monitoring endpoints: executive figures, anomalies, pipeline health."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from . import expect  # noqa: TID252


def test_dashboard_figures(client, served):
    data = served.data
    body = client.get("/api/v1/monitoring/dashboard").json()
    today = expect.today_start()
    txns = expect.txns_since(data, today)
    revenue = float(sum(t.revenue for t in txns))
    assert body["total_revenue_today"] == pytest.approx(revenue, abs=0.01)
    assert body["total_transactions_today"] == len(txns)
    assert body["avg_transaction_value"] == pytest.approx(revenue / len(txns), abs=0.01)
    assert body["active_users"] == expect.active_users(data, body["active_window_minutes"])
    assert body["active_users"] > 0
    assert body["active_users_today"] == len({s.user_id for s in data.sessions
                                              if s.end >= today})
    by_country = expect.revenue_by_country(data, today)
    assert body["top_country"] == max(by_country, key=lambda c: by_country[c][0])
    by_category = expect.revenue_by_category(data, today)
    assert body["top_category"] == max(by_category, key=lambda c: by_category[c][0])
    assert body["anomalies_count"] == sum(1 for a in data.anomalies if a[5] >= today)
    assert body["critical_alerts_today"] == sum(1 for a in data.alerts
                                                if a[5] >= today and a[2] == "critical")
    assert body["data_as_of"] is not None


@pytest.mark.parametrize("hours", [1, 24, 168])
def test_anomalies_window(client, served, hours):
    cutoff = datetime.now(UTC) - timedelta(hours=hours)
    expected = sorted((a for a in served.data.anomalies if a[5] >= cutoff),
                      key=lambda a: a[5], reverse=True)
    response = client.get("/api/v1/monitoring/anomalies", params={"hours": hours})
    assert [a["transaction_id"] for a in response.json()] == [a[0] for a in expected]
    assert int(response.headers["x-total-count"]) == len(expected)


def test_pipeline_rates_lag_and_freshness(client, served):
    data = served.data
    body = client.get("/api/v1/monitoring/pipeline", params={"window_minutes": 10}).json()
    cutoff = datetime.now(UTC) - timedelta(minutes=10)
    per_query_topic: dict = defaultdict(int)
    latest: dict = {}
    for row in data.pipeline:
        query, topic, processed, rows = row[0], row[2], row[3], row[4]
        if processed >= cutoff:
            per_query_topic[(topic, query)] += rows
            if (topic, query) not in latest or processed > latest[(topic, query)][0]:
                latest[(topic, query)] = (processed, row[8])
    topics = {t["topic"]: t for t in body["topics"]}
    assert set(topics) == {"transactions", "product_views", "cart_events", "inventory_events"}
    for topic, item in topics.items():
        records = max(v for (t, _), v in per_query_topic.items() if t == topic)
        assert item["records"] == records
        assert item["records_per_second"] == pytest.approx(records / 600, abs=0.01)
        assert item["lag_records"] == max(lag for (t, _), (_, lag) in latest.items() if t == topic)
    assert {q["query_name"] for q in body["queries"]} == {"sales", "raw_sink", "idle"}
    tables = {t["table"]: t for t in body["tables"]}
    assert tables["marts.customer_rfm_analysis"]["rows"] == len(expect.latest(data.rfm))
    assert tables["order_metrics"]["data_as_of"] is not None
    assert tables["sales_metrics_hourly"]["data_as_of"] is None
    assert body["dead_letters_in_window"] == sum(1 for d in data.dead_letters
                                                 if d[5] >= cutoff)
