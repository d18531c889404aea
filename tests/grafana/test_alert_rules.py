"""The provisioned Grafana alert rules: the committed file is the generator's, every rule fits
Grafana's provisioning model, its SQL runs on the serving dataset, and each rule fires on data
that must fire it and stays quiet on data that must not (the rule evaluated as Grafana does:
one series per row, its text columns the labels, its number the value, against the threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import yaml

from globalmart.alerts import insert_alerts, make_alert
from globalmart.vocabulary import DAGSTER_CHECK_FAILED, RECONCILIATION_CHECK

from .conftest import PROVISIONING  # noqa: TID252

RULES_FILE = PROVISIONING / "alerting" / "globalmart.yaml"
NUMBER = (int, float, Decimal)


def _rules() -> dict[str, dict]:
    config = yaml.safe_load(RULES_FILE.read_text())
    return {rule["title"]: rule for group in config["groups"] for rule in group["rules"]}


def _firing(url: str, rule: dict) -> dict[tuple, float]:
    """The series of ``rule`` above its threshold: labels (text columns) → value."""
    query = next(d for d in rule["data"] if d["refId"] == "A")
    condition = next(d for d in rule["data"] if d["refId"] == rule["condition"])
    (threshold,) = condition["model"]["conditions"]
    assert threshold["evaluator"]["type"] == "gt"
    (above,) = threshold["evaluator"]["params"]
    with psycopg.connect(url) as conn:
        cur = conn.execute(query["model"]["rawSql"])
        names = [c.name for c in cur.description]
        rows = cur.fetchall()
    firing = {}
    for row in rows:
        labels = tuple(v for v in row if isinstance(v, str))
        (value,) = [v for v in row if isinstance(v, NUMBER) and not isinstance(v, bool)] or [None]
        assert value is not None, (names, row)
        if float(value) > above:
            firing[labels] = float(value)
    return firing


def test_committed_rules_match_the_generator(build_module):
    assert RULES_FILE.read_text() == build_module.render_rules(), \
        "run .venv/bin/python grafana/build.py"


def test_rules_fit_grafanas_provisioning_model():
    config = yaml.safe_load(RULES_FILE.read_text())
    assert config["apiVersion"] == 1
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "globalmart.yaml").read_text())
    (source,) = datasource["datasources"]
    rules = _rules()
    assert set(rules) == {"Consumer lag", "Stale marts", "Failed reconciliation"}
    assert len({r["uid"] for r in rules.values()}) == len(rules)
    for group in config["groups"]:
        assert group["orgId"] == 1 and group["folder"] and group["interval"]
    for rule in rules.values():
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs
        for data in rule["data"]:
            assert data["model"]["refId"] == data["refId"]
            if data["datasourceUid"] == "__expr__":
                assert data["model"]["expression"] in refs - {data["refId"]}
            else:
                assert data["datasourceUid"] == source["uid"]
                assert data["model"]["format"] == "table" and data["model"]["rawSql"]
                assert "$" not in data["model"]["rawSql"]  # no macros in alert queries
        assert rule["noDataState"] in {"OK", "NoData", "Alerting"}
        assert rule["execErrState"] in {"OK", "Error", "Alerting"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize("title", ["Consumer lag", "Stale marts", "Failed reconciliation"])
def test_rule_sql_runs_on_the_serving_dataset(grafana_db, title):
    _firing(grafana_db, _rules()[title])  # runs, and every row has one number


def _pipeline_batch(lag: int, topic: str = "transactions") -> str:
    return ("INSERT INTO pipeline_metrics (query_name, batch_id, topic, processed_at, "
            "input_rows, input_rows_per_second, processed_rows_per_second, batch_duration_ms, "
            f"lag_records, rows_written) VALUES ('realtime', {lag}, '{topic}', now(), 1, 1, 1, "
            f"1, {lag}, 1)")


def _trend_day(day: date) -> str:
    return ("INSERT INTO marts.sales_trends (trend_type, date, revenue, orders, "
            f"average_order_value) VALUES ('daily', '{day.isoformat()}', 1, 1, 1)")


def _alert(entity: str) -> Callable[[psycopg.Connection], None]:
    return lambda conn: insert_alerts(conn, [make_alert(
        DAGSTER_CHECK_FAILED, "critical", entity, "failed in a test", key=entity)])


TODAY = datetime.now(UTC).date()
CASES = {
    # rule: (what fills the database, the labels expected to fire)
    "lag far behind": ("Consumer lag", [_pipeline_batch(10_000_000)], {("transactions",)}),
    "lag caught up": ("Consumer lag", [_pipeline_batch(0), _pipeline_batch(5, "cart_events")],
                      set()),
    "mart days behind": ("Stale marts", [_trend_day(TODAY - timedelta(days=3))],
                         {("sales_trends",)}),
    "mart up to date": ("Stale marts", [_trend_day(TODAY - timedelta(days=1))], set()),
    "reconciliation failed": ("Failed reconciliation",
                              [_alert(f"warehouse/fact_sales:{RECONCILIATION_CHECK}")], {()}),
    "another check failed": ("Failed reconciliation",
                             [_alert("warehouse/fact_sales:unique_keys")], set()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_fires_exactly_when_it_should(make_database, case):
    title, fills, expected = CASES[case]
    url = make_database()
    with psycopg.connect(url) as conn:
        for fill in fills:
            conn.execute(fill) if isinstance(fill, str) else fill(conn)
    assert set(_firing(url, _rules()[title])) == expected
