"""The API over tables written by the real pipeline pieces: events from the generator's
simulation, turned into sales windows by the streaming application's realtime sink (one
micro-batch, as the stream collects it). Expected figures come straight from the generated
events."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from globalmart.keys import create_key

from .conftest import make_settings  # noqa: TID252

pytestmark = pytest.mark.slow


def _minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def pipeline(make_database) -> tuple[str, list[dict]]:
    """A database filled by the streaming transforms and sinks from an hour of simulation."""
    from generator.config import GeneratorSettings
    from generator.runner import build_simulator
    from streaming.notifier import LogNotifier
    from streaming.sinks.batch import BatchStats, RealtimeSink
    from streaming.sinks.store import Postgres
    from streaming.transforms.parse import kafka_records

    now = datetime.now(UTC)
    settings = GeneratorSettings(rate=5.0, seed=23, users=3000, products=400, history_days=0)
    simulator = build_simulator(settings, now - timedelta(hours=1))
    messages = []
    while True:
        end_us, out = simulator.step()
        messages += [m for m in out if m[0] == "transactions"]
        if end_us >= int(now.timestamp() * 1_000_000):
            break
    records = kafka_records([("transactions", 0, offset, value)
                             for offset, (_, _, value) in enumerate(messages)])
    url = make_database()
    RealtimeSink("realtime", Postgres(url), None, LogNotifier(), BatchStats(),
                 timedelta(minutes=10), 0.8).process(records, 0)
    events = [json.loads(value, parse_float=Decimal) for _, _, value in messages]
    for event in events:
        event["event_time"] = datetime.fromisoformat(event["event_time"])
    return url, events


def test_sales_endpoints_match_the_generated_events(pipeline, redis_url, cache_prefix):
    url, events = pipeline
    assert len(events) > 100
    key = create_key(url, "pipeline")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    todays = [e for e in events if _minute(e["event_time"]) >= today]
    by_country: dict[str, list] = defaultdict(lambda: [Decimal(0), 0])
    by_category: dict[str, Decimal] = defaultdict(Decimal)
    orders: list[Decimal] = []
    for event in todays:
        revenue = sum((Decimal(str(i["unit_price"])) * i["quantity"] for i in event["items"]),
                      Decimal(0))
        orders.append(revenue)
        by_country[event["country"]][0] += revenue
        by_country[event["country"]][1] += 1
        for item in event["items"]:
            by_category[item["category"]] += Decimal(str(item["unit_price"])) * item["quantity"]
    total = sum((v[0] for v in by_country.values()), Decimal(0))

    settings = make_settings(url, redis_url, cache_prefix)
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
        summary = client.get("/api/v1/sales/summary", params={"period": "today"}).json()
        countries = client.get("/api/v1/sales/by-country", params={"period": "today"}).json()
        categories = client.get("/api/v1/sales/by-category", params={"period": "today"}).json()
        dashboard = client.get("/api/v1/monitoring/dashboard").json()
    assert summary["metrics"]["transaction_count"] == len(todays)
    assert Decimal(str(summary["metrics"]["total_revenue"])) == total
    assert Decimal(str(summary["metrics"]["min_transaction"])) == min(orders)
    assert Decimal(str(summary["metrics"]["max_transaction"])) == max(orders)
    assert {c["country"]: (Decimal(str(c["revenue"])), c["orders"])
            for c in countries["countries"]} == {k: tuple(v) for k, v in by_country.items()}
    assert {c["category"]: Decimal(str(c["revenue"])) for c in categories["categories"]} == (
        dict(by_category))
    assert Decimal(str(dashboard["total_revenue_today"])) == total
    assert dashboard["top_country"] == max(by_country, key=lambda c: by_country[c][0])
