"""The whole graph for one day of events: real PostgreSQL, real Spark, real Dagster runs.

Expected figures are computed here from the events themselves (re-deliveries counted once)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from globalmart.vocabulary import SEGMENTS
from globalmart_dagster.defs.marts.assets import MARTS
from globalmart_dagster.resources import MongoMartIOManager
from tests.dagster.conftest import DAY, Built, make_resources
from tests.dagster.dataset import (
    FACT_SALES_COLUMNS,
    expected_fact_sales,
    generated_day,
    write_raw_layer,
    write_stream_ledger,
)

pytestmark = pytest.mark.slow

TABLES = {
    "warehouse.dim_date": "date_key",
    "warehouse.dim_customer": "customer_key",
    "warehouse.dim_product": "product_id",
    "warehouse.dim_location": "location_key",
    "warehouse.fact_sales": "transaction_id, line_number",
    "warehouse.fact_sessions": "session_id",
    "marts.customer_rfm_analysis": "user_id",
    "marts.product_performance": "product_id",
    "marts.sales_trends": "trend_type, date",
}


def rows(url: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every warehouse and mart table, ordered, without load timestamps."""
    result = {}
    with psycopg.connect(url) as conn:
        for table, order in TABLES.items():
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema || '.' || table_name = %s AND column_name <> 'loaded_at' "
                "ORDER BY ordinal_position", (table,)).fetchall()]
            result[table] = conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").fetchall()
    return result


def test_daily_job_succeeds_with_every_check_passing(built: Built):
    assert built.result.success
    evaluations = built.result.get_asset_check_evaluations()
    names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    assert ("warehouse/fact_sales", "revenue_reconciles") in names
    assert ("marts/customer_rfm_analysis", "one_segment_per_customer") in names
    assert len(evaluations) >= 16
    assert [n for e in evaluations if not e.passed for n in [e.check_name]] == []
    # the daily tables' checks keep the day's result under the day; the dimensions' do not
    daily = {"warehouse/fact_sales", "warehouse/fact_sessions", "marts/customer_rfm_analysis"}
    filed = {(e.asset_key.to_user_string(), e.check_name): e.partition for e in evaluations}
    assert filed == {check: DAY.isoformat() if check[0] in daily else None for check in filed}
    assert {asset for asset, _ in filed} >= daily | {"warehouse/dim_customer"}


def test_fact_sales_holds_every_line_once(built: Built):
    stored = rows(built.url, f"SELECT {FACT_SALES_COLUMNS} FROM warehouse.fact_sales "
                             "WHERE event_date = %s ORDER BY 1, 2", (DAY,))
    assert stored == expected_fact_sales(built.data)
    assert len(built.data.events["transactions"]) > len(built.data.unique("transactions"))


def test_inferred_members_for_keys_the_sources_lack(built: Built):
    buyers = {tx["user_id"] for tx in built.data.unique("transactions")}
    inferred = {r[0] for r in rows(built.url, "SELECT user_id FROM warehouse.dim_customer "
                                              "WHERE is_inferred")}
    assert len(inferred) >= 2 and inferred <= buyers - set(built.customers)
    sold = {line["product_id"] for tx in built.data.unique("transactions") for line in tx["items"]}
    missing_products = sold - built.products
    stored = {r[0] for r in rows(built.url, "SELECT product_id FROM warehouse.dim_product "
                                            "WHERE is_inferred")}
    assert stored == missing_products


def test_fact_sessions_count_each_session_activity(built: Built):
    expected: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal("0.00")])
    actions = {"add": 1, "remove": 2, "update": 3}
    for view in built.data.unique("product_views"):
        expected[view["session_id"]][0] += 1
    for cart in built.data.unique("cart_events"):
        expected[cart["session_id"]][actions[cart["action"]]] += 1
    for tx in built.data.unique("transactions"):
        expected[tx["session_id"]][4] += 1
        expected[tx["session_id"]][5] += sum(i["quantity"] * i["unit_price"] for i in tx["items"])
    stored = {r[0]: list(r[1:]) for r in rows(
        built.url, "SELECT session_id, page_views, cart_adds, cart_removes, cart_updates, "
                   "purchases, revenue FROM warehouse.fact_sessions WHERE event_date = %s",
        (DAY,))}
    assert sum(e[3] for e in expected.values()) > 0  # the generator's funnel has updates
    assert stored == dict(expected)


def test_rfm_matches_the_events(built: Built):
    frequency: Counter[str] = Counter()
    monetary: dict[str, Decimal] = defaultdict(Decimal)
    for tx in built.data.unique("transactions"):
        frequency[tx["user_id"]] += 1
        monetary[tx["user_id"]] += sum(i["quantity"] * i["unit_price"] for i in tx["items"])
    stored = rows(built.url, "SELECT user_id, recency, frequency, monetary, r_score, f_score, "
                             "m_score, rfm_segment FROM marts.customer_rfm_analysis "
                             "WHERE analysis_date = %s", (DAY,))
    assert {r[0]: (r[1], r[2], r[3]) for r in stored} == {
        u: (0, frequency[u], monetary[u]) for u in frequency
    }
    assert all(r[7] in SEGMENTS for r in stored)
    for index, value in ((4, None), (5, 2), (6, 3)):
        sizes = Counter(r[index] for r in stored)
        assert set(sizes) == {1, 2, 3, 4, 5} and max(sizes.values()) - min(sizes.values()) <= 1
        if value is not None:  # higher score, never a lower value
            for score in range(1, 5):
                assert (max(r[value] for r in stored if r[index] == score)
                        <= min(r[value] for r in stored if r[index] == score + 1))


def test_product_performance_matches_the_events(built: Built):
    units: Counter[str] = Counter()
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for tx in built.data.unique("transactions"):
        for line in tx["items"]:
            units[line["product_id"]] += line["quantity"]
            revenue[line["product_id"]] += line["quantity"] * line["unit_price"]
    stored = rows(built.url, "SELECT product_id, category, units_sold, total_revenue, avg_price, "
                             "performance_score, rank_in_category FROM marts.product_performance "
                             "WHERE analysis_date = %s", (DAY,))
    assert {r[0]: (r[2], r[3]) for r in stored} == {p: (units[p], revenue[p]) for p in units}
    for r in stored:
        assert r[4] == (revenue[r[0]] / units[r[0]]).quantize(Decimal("0.01"))
    by_category: dict[str, list] = defaultdict(list)
    for r in stored:
        by_category[r[1]].append(r)
    for members in by_category.values():
        ranked = sorted(members, key=lambda r: r[6])
        assert [r[6] for r in ranked] == list(range(1, len(members) + 1))
        assert [r[5] for r in ranked] == sorted((r[5] for r in members), reverse=True)
        assert 0 < ranked[-1][5] <= ranked[0][5] <= 100


def test_sales_trends_match_the_events(built: Built):
    txs = built.data.unique("transactions")
    revenue = sum(i["quantity"] * i["unit_price"] for tx in txs for i in tx["items"])
    aov = (revenue / len(txs)).quantize(Decimal("0.01"))
    stored = {(r[0], r[1]): r[2:] for r in rows(
        built.url, "SELECT trend_type, date, revenue, orders, average_order_value, "
                   "moving_average, growth FROM marts.sales_trends")}
    monday = DAY - timedelta(days=DAY.weekday())
    assert stored == {
        ("daily", DAY): (revenue, len(txs), aov, revenue, None),
        ("weekly", monday): (revenue, len(txs), aov, revenue, None),
        ("monthly", DAY.replace(day=1)): (revenue, len(txs), aov, revenue, None),
    }


def test_rematerializing_a_day_changes_nothing(built: Built):
    before = snapshot(built.url)
    again = built.run_day()
    assert again.success
    assert snapshot(built.url) == before


def test_mongodb_backend_stores_the_same_marts(built: Built, mongo_marts: MongoMartIOManager):
    """The marts through the MongoDB IO manager (a real wire-protocol server): the figures of
    the events (money exact, as Decimal128), the segments the PostgreSQL backend stored, and a
    rerun replaces the day."""
    frequency: Counter[str] = Counter()
    monetary: dict[str, Decimal] = defaultdict(Decimal)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for tx in built.data.unique("transactions"):
        frequency[tx["user_id"]] += 1
        for line in tx["items"]:
            monetary[tx["user_id"]] += line["quantity"] * line["unit_price"]
            revenue[line["product_id"]] += line["quantity"] * line["unit_price"]
    resources = {**make_resources(built.url, built.lake), "mart_io_manager": mongo_marts}
    result = dg.materialize(MARTS, partition_key=DAY.isoformat(), resources=resources)
    assert result.success
    rfm = mongo_marts.read("customer_rfm_analysis")
    assert sorted(zip(rfm["user_id"], rfm["frequency"], rfm["monetary"], strict=True)) == [
        (u, frequency[u], monetary[u]) for u in sorted(frequency)]
    segments = rows(built.url, "SELECT user_id, rfm_segment FROM marts.customer_rfm_analysis "
                               "WHERE analysis_date = %s ORDER BY user_id", (DAY,))
    assert sorted(zip(rfm["user_id"], rfm["rfm_segment"], strict=True)) == segments
    assert set(rfm["analysis_date"]) == {datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)}
    products = mongo_marts.read("product_performance")
    assert dict(zip(products["product_id"], products["total_revenue"], strict=True)) == revenue
    again = dg.materialize(MARTS, partition_key=DAY.isoformat(), resources=resources)
    assert again.success and len(mongo_marts.read("customer_rfm_analysis")) == len(frequency)
    assert len(mongo_marts.read("sales_trends")) == 3


def test_backfill_of_a_range_is_one_run_and_keeps_days_apart(built: Built):
    before = rows(built.url, "SELECT transaction_id, line_number, line_amount "
                             "FROM warehouse.fact_sales ORDER BY 1, 2")
    previous = DAY - timedelta(days=1)
    data, write_sources = generated_day(previous, seed=43)
    write_raw_layer(built.lake, data)
    write_sources(built.url)
    write_stream_ledger(built.url, data)
    job = built.defs.resolve_job_def("daily_warehouse_job")
    result = job.execute_in_process(raise_on_error=False, tags={
        "dagster/asset_partition_range_start": previous.isoformat(),
        "dagster/asset_partition_range_end": DAY.isoformat()})
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    rfm_days = {e.partition for e in result.get_asset_check_evaluations()
                if e.asset_key.to_user_string() == "marts/customer_rfm_analysis"}
    assert rfm_days == {previous.isoformat(), DAY.isoformat()}  # a result per day of the run
    by_day = dict(rows(built.url, "SELECT event_date, sum(line_amount) "
                                  "FROM warehouse.fact_sales GROUP BY 1"))
    assert by_day[previous] == sum(i["quantity"] * i["unit_price"]
                                   for tx in data.unique("transactions") for i in tx["items"])
    assert rows(built.url, "SELECT transaction_id, line_number, line_amount FROM "
                           "warehouse.fact_sales WHERE event_date = %s ORDER BY 1, 2",
                (DAY,)) == before
    snapshots = rows(built.url, "SELECT analysis_date, count(*) FROM "
                                "marts.customer_rfm_analysis GROUP BY 1 ORDER BY 1")
    buyers_before = {tx["user_id"] for tx in data.unique("transactions")}
    buyers_day = {tx["user_id"] for tx in built.data.unique("transactions")}
    assert snapshots == [(previous, len(buyers_before)), (DAY, len(buyers_before | buyers_day))]


def test_customer_change_opens_a_new_version(built: Built):
    known = built.customers
    user = next(tx["user_id"] for tx in built.data.unique("transactions")
                if tx["user_id"] in known and known[tx["user_id"]]["city"] != "Lyon")
    changed_at = datetime.now(UTC)
    with psycopg.connect(built.url) as conn:
        conn.execute("UPDATE source.customers SET city = 'Lyon', country = 'France', "
                     "updated_at = %s WHERE user_id = %s", (changed_at, user))
    assert built.run_day().success
    versions = rows(built.url, "SELECT customer_key, city, valid_from, valid_to, is_current "
                               "FROM warehouse.dim_customer WHERE user_id = %s "
                               "ORDER BY valid_from", (user,))
    assert [(v[1], v[4]) for v in versions] == [(known[user]["city"], False),
                                                ("Lyon", True)]
    assert versions[0][3] == versions[1][2] == changed_at
    keys = {r[0] for r in rows(built.url, "SELECT DISTINCT customer_key FROM "
                                          "warehouse.fact_sales WHERE user_id = %s", (user,))}
    assert keys == {versions[0][0]}  # the day's events happened before the change
