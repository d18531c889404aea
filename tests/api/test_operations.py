"""Inventory, sessions, cart abandonment and alerts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from . import dataset as ds  # noqa: TID252


def _stock(data) -> dict[str, int]:
    return {pid: initial - data.stock[pid][0] + data.stock[pid][1] + data.stock[pid][2]
            for pid, (_, _, initial) in data.products.items()}


def test_inventory_status_counts_and_order(client, served):
    stock = _stock(served.data)
    body = client.get("/api/v1/inventory/status", params={"limit": 1000}).json()
    counts = Counter(ds.stock_status(s) for s in stock.values())
    assert body["summary"] == {"ok": counts["ok"], "low": counts["low"],
                               "critical": counts["critical"], "out": counts["out"],
                               "total": len(stock)}
    assert [(i["product_id"], i["current_stock"]) for i in body["items"]] == sorted(
        stock.items(), key=lambda kv: (kv[1], kv[0]))


def test_low_stock(client, served):
    stock = _stock(served.data)
    low = sorted(((p, s) for p, s in stock.items() if s <= 10), key=lambda kv: (kv[1], kv[0]))
    assert low, "the dataset must hold low-stock products"
    body = client.get("/api/v1/inventory/low-stock").json()
    assert [(i["product_id"], i["current_stock"]) for i in body["items"]] == low


def test_sessions_summary(client, served):
    data = served.data
    body = client.get("/api/v1/sessions", params={"hours": 24}).json()
    cutoff = datetime.now(UTC) - timedelta(hours=24)
    sessions = [s for s in data.sessions if s.end >= cutoff]
    assert body["sessions"] == len(sessions)
    assert body["unique_users"] == len({s.user_id for s in sessions})
    assert body["conversion_rate"] == pytest.approx(
        sum(1 for s in sessions if s.purchases) / len(sessions), abs=1e-4)
    assert body["revenue"] == pytest.approx(float(sum(s.revenue for s in sessions)), abs=0.01)


def test_cart_abandonment(client, served):
    data = served.data
    body = client.get("/api/v1/sessions/cart-abandonment", params={"hours": 24}).json()
    cutoff = datetime.now(UTC) - timedelta(hours=24)
    abandoned = [a for a in data.abandoned if a[5] >= cutoff]
    with_cart = [s for s in data.sessions if s.end >= cutoff and s.cart_adds > 0]
    assert body["abandoned_carts"] == len(abandoned)
    assert body["sessions_with_cart"] == len(with_cart)
    assert body["abandonment_rate"] == pytest.approx(len(abandoned) / len(with_cart), abs=1e-4)
    assert {i["session_id"] for i in body["items"]} == {a[0] for a in abandoned}


def test_alerts_by_severity(client, served):
    cutoff = datetime.now(UTC) - timedelta(hours=24)
    recent = [a for a in served.data.alerts if a[5] >= cutoff]
    body = client.get("/api/v1/alerts", params={"hours": 24}).json()
    assert body["counts"] == {s: sum(1 for a in recent if a[2] == s)
                              for s in ("info", "warning", "critical")}
    assert [a["alert_id"] for a in body["items"]] == [
        a[0] for a in sorted(recent, key=lambda a: a[5], reverse=True)]
    critical = client.get("/api/v1/alerts", params={"severity": "critical"}).json()
    assert {a["severity"] for a in critical["items"]} == {"critical"}
