"""Each asset check fails on a table broken on purpose (and passes on the intact one), and a
run that fails on them becomes alerts.

The built database is cloned (``CREATE DATABASE ... TEMPLATE``) for every case, so the cases
never see each other's damage; the clones are dropped at the end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from globalmart.contracts import ALERTS_TOPIC
from globalmart.embedded import free_port
from globalmart.kafka import ensure_topics, read_to_end
from globalmart_dagster.definitions import build_definitions
from globalmart_dagster.defs.alerts import (
    failed_check_alerts,
    failed_checks,
    failed_run_alerts,
    run_alerts,
)
from globalmart_dagster.defs.checks import ALL_CHECKS
from globalmart_dagster.defs.freshness import fact_freshness_checks
from globalmart_dagster.defs.marts.assets import MARTS
from globalmart_dagster.defs.warehouse.assets import fact_sales
from globalmart_dagster.resources import KafkaResource, WarehouseResource
from tests.dagster.conftest import DAY, Built, make_resources

pytestmark = pytest.mark.slow

ONE_ROW = "(SELECT ctid FROM {t} LIMIT 1)"
# The stream's day ledger as the raw layer's truth (Σ lines of each distinct transaction, from
# the test's own dataset) plus {extra}, split into accepted and left out as late.
LEDGER = ("INSERT INTO public.stream_day_ledger (event_date, accepted_transactions, "
          "accepted_revenue, late_transactions, late_revenue) VALUES ('{day}', {n} - 3, "
          "{revenue} - 10.00 + {extra}, 3, 10.00) ON CONFLICT (event_date) DO UPDATE SET "
          "accepted_transactions = EXCLUDED.accepted_transactions, "
          "accepted_revenue = EXCLUDED.accepted_revenue, "
          "late_transactions = EXCLUDED.late_transactions, late_revenue = EXCLUDED.late_revenue")


def _one(table: str) -> str:
    return ONE_ROW.format(t=table)


# case id: (SQL that breaks the table, asset, check that must fail)
CASES: dict[str, tuple[list[str], str, str]] = {
    "fact_sales duplicate line": (
        ["INSERT INTO warehouse.fact_sales SELECT * FROM warehouse.fact_sales LIMIT 1"],
        "warehouse/fact_sales", "unique_keys"),
    "fact_sales null key": (
        ["ALTER TABLE warehouse.fact_sales ALTER COLUMN line_number DROP NOT NULL",
         "UPDATE warehouse.fact_sales SET line_number = NULL "
         f"WHERE ctid = {_one('warehouse.fact_sales')}"],
        "warehouse/fact_sales", "no_null_keys"),
    "fact_sales unknown product": (
        ["UPDATE warehouse.fact_sales SET product_id = 'no-such-product' "
         f"WHERE ctid = {_one('warehouse.fact_sales')}"],
        "warehouse/fact_sales", "foreign_keys_exist"),
    "fact_sales unknown date": (
        ["UPDATE warehouse.fact_sales SET date_key = 19000101 "
         f"WHERE ctid = {_one('warehouse.fact_sales')}"],
        "warehouse/fact_sales", "foreign_keys_exist"),
    "stream ledger one cent off": (
        [LEDGER.replace("{extra}", "0.01")],
        "warehouse/fact_sales", "revenue_reconciles"),
    "fact_sales line lost": (
        [f"DELETE FROM warehouse.fact_sales WHERE ctid = {_one('warehouse.fact_sales')}"],
        "warehouse/fact_sales", "revenue_reconciles"),
    "fact_sessions duplicate": (
        ["INSERT INTO warehouse.fact_sessions SELECT * FROM warehouse.fact_sessions LIMIT 1"],
        "warehouse/fact_sessions", "unique_keys"),
    "fact_sessions null key": (
        ["ALTER TABLE warehouse.fact_sessions ALTER COLUMN session_id DROP NOT NULL",
         "UPDATE warehouse.fact_sessions SET session_id = NULL "
         f"WHERE ctid = {_one('warehouse.fact_sessions')}"],
        "warehouse/fact_sessions", "no_null_keys"),
    "fact_sessions unknown customer": (
        ["UPDATE warehouse.fact_sessions SET customer_key = -1 "
         f"WHERE ctid = {_one('warehouse.fact_sessions')}"],
        "warehouse/fact_sessions", "foreign_keys_exist"),
    "dim_date duplicate": (
        ["ALTER TABLE warehouse.dim_date DROP CONSTRAINT dim_date_pkey",
         "ALTER TABLE warehouse.dim_date DROP CONSTRAINT dim_date_full_date_key",
         "INSERT INTO warehouse.dim_date SELECT * FROM warehouse.dim_date LIMIT 1"],
        "warehouse/dim_date", "unique_keys"),
    "dim_date null key": (
        ["ALTER TABLE warehouse.dim_date DROP CONSTRAINT dim_date_pkey",
         "ALTER TABLE warehouse.dim_date ALTER COLUMN date_key DROP NOT NULL",
         "UPDATE warehouse.dim_date SET date_key = NULL "
         f"WHERE ctid = {_one('warehouse.dim_date')}"],
        "warehouse/dim_date", "no_null_keys"),
    "dim_customer duplicate key": (
        ["ALTER TABLE warehouse.dim_customer DROP CONSTRAINT dim_customer_pkey",
         "ALTER TABLE warehouse.dim_customer DROP CONSTRAINT dim_customer_version_uq",
         "DROP INDEX warehouse.dim_customer_current_uq",
         "INSERT INTO warehouse.dim_customer OVERRIDING SYSTEM VALUE "
         "SELECT * FROM warehouse.dim_customer LIMIT 1"],
        "warehouse/dim_customer", "unique_keys"),
    "dim_customer two current versions": (
        ["DROP INDEX warehouse.dim_customer_current_uq",
         "INSERT INTO warehouse.dim_customer (user_id, valid_from) "
         "SELECT user_id, now() FROM warehouse.dim_customer LIMIT 1"],
        "warehouse/dim_customer", "one_current_version"),
    "dim_product duplicate": (
        ["ALTER TABLE warehouse.dim_product DROP CONSTRAINT dim_product_pkey",
         "INSERT INTO warehouse.dim_product SELECT * FROM warehouse.dim_product LIMIT 1"],
        "warehouse/dim_product", "unique_keys"),
    "dim_product null key": (
        ["ALTER TABLE warehouse.dim_product DROP CONSTRAINT dim_product_pkey",
         "ALTER TABLE warehouse.dim_product ALTER COLUMN product_id DROP NOT NULL",
         "UPDATE warehouse.dim_product SET product_id = NULL "
         f"WHERE ctid = {_one('warehouse.dim_product')}"],
        "warehouse/dim_product", "no_null_keys"),
    "dim_location duplicate": (
        ["ALTER TABLE warehouse.dim_location DROP CONSTRAINT dim_location_pkey",
         "ALTER TABLE warehouse.dim_location DROP CONSTRAINT dim_location_uq",
         "INSERT INTO warehouse.dim_location OVERRIDING SYSTEM VALUE "
         "SELECT * FROM warehouse.dim_location LIMIT 1"],
        "warehouse/dim_location", "unique_keys"),
    "rfm unknown segment": (
        ["UPDATE marts.customer_rfm_analysis SET rfm_segment = 'VIP' "
         f"WHERE ctid = {_one('marts.customer_rfm_analysis')}"],
        "marts/customer_rfm_analysis", "one_segment_per_customer"),
    "rfm customer twice": (
        ["ALTER TABLE marts.customer_rfm_analysis DROP CONSTRAINT customer_rfm_analysis_pkey",
         "INSERT INTO marts.customer_rfm_analysis "
         "SELECT * FROM marts.customer_rfm_analysis LIMIT 1"],
        "marts/customer_rfm_analysis", "one_segment_per_customer"),
}


@pytest.fixture(scope="module")
def clone(built: Built) -> Iterator:
    """Factory: a copy of the built database (dropped at the end of the module)."""
    parts = urlsplit(built.url)
    source = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    made: list[str] = []

    def make() -> str:
        name = f"{source}_c{uuid.uuid4().hex[:6]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(source)))
        made.append(name)
        return urlunsplit(parts._replace(path=f"/{name}"))

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def run_checks(url: str, built: Built, asset: str) -> dict[str, bool]:
    """Run every check of ``asset`` on its whole table, as from the asset's Checks tab (a job
    of checks only has no partitions; the partition-scoped mode runs in the daily job)."""
    key = dg.AssetKey.from_user_string(asset)
    defs = build_definitions(make_resources(url, built.lake))
    checks = [c for c in ALL_CHECKS if key in {k.asset_key for k in c.check_keys}]
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*checks))
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("checks_only")
    result = resolved.execute_in_process(raise_on_error=False)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()
            if e.asset_key == key}


def _truth(built: Built) -> dict[str, object]:
    transactions = built.data.unique("transactions")
    revenue = sum(line["quantity"] * line["unit_price"] for tx in transactions
                  for line in tx["items"])
    return {"day": DAY.isoformat(), "n": len(transactions), "revenue": revenue}


def test_a_ledger_that_adds_up_to_the_cent_passes(built: Built, clone):
    url = clone()
    with psycopg.connect(url) as conn:
        conn.execute(LEDGER.format(extra="0", **_truth(built)))  # type: ignore[arg-type]
    assert run_checks(url, built, "warehouse/fact_sales")["revenue_reconciles"] is True


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_fails_on_a_broken_table(case: str, built: Built, clone):
    statements, asset, check = CASES[case]
    statements = [s.format(**_truth(built)) if s.startswith("INSERT INTO public.stream_day")
                  else s for s in statements]
    url = clone()
    assert run_checks(url, built, asset)[check] is True
    with psycopg.connect(url) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]
    outcome = run_checks(url, built, asset)
    assert outcome[check] is False, outcome


def facts_and_marts(defs: dg.Definitions) -> dg.JobDefinition:
    """A job of the day's sales facts, their checks and the marts (no dimensions)."""
    selection = (dg.AssetSelection.assets(fact_sales, *MARTS)
                 - dg.AssetSelection.checks(*fact_freshness_checks))
    job = dg.define_asset_job("facts_and_marts", selection=selection)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(
        "facts_and_marts")


def test_a_failing_blocking_check_keeps_the_marts_from_running(built: Built, clone):
    url = clone()
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM warehouse.dim_date")  # every fact row loses its date
        conn.execute("DELETE FROM marts.customer_rfm_analysis")
    job = facts_and_marts(build_definitions(make_resources(url, built.lake)))
    result = job.execute_in_process(partition_key=DAY.isoformat(), raise_on_error=False)
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "foreign_keys_exist" in failed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "warehouse/fact_sales" in materialized
    assert not materialized & {"marts/customer_rfm_analysis", "marts/product_performance",
                               "marts/sales_trends"}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM marts.customer_rfm_analysis").fetchone() == (0,)


# fact_sales's daily checks (the freshness check judges the clock, not a day)
FACT_SALES_DAILY_CHECKS = ("unique_keys", "no_null_keys", "foreign_keys_exist",
                           "revenue_reconciles")


def test_a_backfill_of_several_days_keeps_a_result_per_day(built: Built, clone):
    """One run of two days (a single-run backfill) files each daily check's result under its
    day, where the UI reads it: the storage's per-day status, current against the day's
    latest materialization. The day that lost its date fails alone, and its alert names it."""
    url = clone()
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM warehouse.dim_date WHERE full_date = %s", (DAY,))
    days = [(DAY - timedelta(days=1)).isoformat(), DAY.isoformat()]
    instance = dg.DagsterInstance.ephemeral()
    job = facts_and_marts(build_definitions(make_resources(url, built.lake)))
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags={
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1]})
    assert not result.success
    judged = {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()
              if e.asset_key == fact_sales.key}
    assert judged == {(name, day): not (name == "foreign_keys_exist" and day == days[-1])
                      for name in FACT_SALES_DAILY_CHECKS for day in days}
    for name in FACT_SALES_DAILY_CHECKS:
        infos = instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(fact_sales.key, name)])
        statuses = {(i.partition_key, i.latest_execution_status.value, i.is_current)
                    for i in infos}
        failed = name == "foreign_keys_exist"
        assert statuses == {(days[0], "SUCCEEDED", True),
                            (days[-1], "FAILED" if failed else "SUCCEEDED", True)}, name
    alerts = run_alerts(result.dagster_run, None, failed_checks(instance, result.run_id))
    assert [(a.entity_id, f"[{days[-1]}]" in a.message) for a in alerts] == [
        ("warehouse/fact_sales:foreign_keys_exist", True)]


def _alerts_in_topic(bootstrap: str) -> list[dict]:
    """Every message of the ``alerts`` topic (the test's broker holds only this test's)."""
    return [json.loads(value) for value in read_to_end(bootstrap, [ALERTS_TOPIC])]


def _alert_rows(url: str) -> list[tuple[str, str, str, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(map(str, row)) for row in conn.execute(
            "SELECT alert_id, alert_type, severity, entity_id FROM public.alerts ORDER BY 1")]


def test_a_failed_run_and_its_failed_checks_become_alerts(built: Built, clone, broker):
    """A build of a day's facts whose dates were deleted fails on its blocking checks: the
    failure sensor raises one critical alert for the run and one per failed check, in
    public.alerts and on the alerts topic, once however often the tick is evaluated; with no
    broker the tick fails and the rows are still stored; a run whose checks all pass raises
    none."""
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, [ALERTS_TOPIC], partitions=1)
    url = clone()
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM warehouse.dim_date")  # every fact row loses its date
    instance = dg.DagsterInstance.ephemeral()

    def daily_build(url: str) -> tuple[dict, dg.ExecuteInProcessResult]:
        """The day's facts and marts (not the dimensions, which would repair dim_date)."""
        resources = make_resources(url, built.lake, bootstrap)
        job = facts_and_marts(build_definitions(resources))
        return {"warehouse": resources["warehouse"], "kafka": resources["kafka"]}, \
            job.execute_in_process(partition_key=DAY.isoformat(), instance=instance,
                                   raise_on_error=False)

    resources, result = daily_build(url)
    assert not result.success
    failed = {f"{e.asset_key.to_user_string()}:{e.check_name}"
              for e in result.get_asset_check_evaluations() if not e.passed}
    assert "warehouse/fact_sales:foreign_keys_exist" in failed  # what deleting the dates breaks
    context = dg.build_run_status_sensor_context(
        sensor_name="failed_run_alerts", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run, resources=resources,
    ).for_run_failure()
    failed_run_alerts(context)
    rows = _alert_rows(url)
    assert sorted((kind, entity) for _, kind, _, entity in rows) == sorted(
        [("dagster_run_failed", f"facts_and_marts [{DAY.isoformat()}]")]
        + [("dagster_check_failed", name) for name in failed])
    assert {severity for _, _, severity, _ in rows} == {"critical"}
    published = _alerts_in_topic(bootstrap)
    assert sorted(a["alert_id"] for a in published) == [alert_id for alert_id, *_ in rows]
    assert all(result.run_id in a["message"] for a in published)

    failed_run_alerts(context)  # the same tick again: nothing raised twice
    assert _alert_rows(url) == rows
    assert len(_alerts_in_topic(bootstrap)) == len(rows)

    elsewhere = clone()  # a broker that does not answer: the tick fails, the rows are kept
    down = {"warehouse": WarehouseResource(database_url=elsewhere),
            "kafka": KafkaResource(bootstrap_servers=f"127.0.0.1:{free_port()}",
                                   timeout_seconds=2)}
    with pytest.raises(RuntimeError, match="not delivered"):
        failed_run_alerts(dg.build_run_status_sensor_context(
            sensor_name="failed_run_alerts", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run, resources=down,
        ).for_run_failure())
    assert _alert_rows(elsewhere) == rows

    passing = clone()
    resources, result = daily_build(passing)
    assert result.success
    failed_check_alerts(dg.build_run_status_sensor_context(
        sensor_name="failed_check_alerts", dagster_event=result.get_run_success_event(),
        dagster_instance=instance, dagster_run=result.dagster_run, resources=resources))
    assert _alert_rows(passing) == []
    assert len(_alerts_in_topic(bootstrap)) == len(rows)
