"""The code location loads, and what the UI shows is described and grouped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from globalmart_dagster.definitions import build_definitions
from globalmart_dagster.wiring import build_resources

REPO = Path(__file__).resolve().parents[2]
defs = build_definitions(build_resources())


def test_every_asset_has_a_description_and_its_folders_group_and_owner():
    """Groups and owners come from the defs.yaml of each folder of defs/ (one folder per key
    prefix)."""
    graph = defs.resolve_asset_graph()
    nodes = list(graph.asset_nodes)
    assert len(nodes) == 15
    for node in nodes:
        assert node.description and len(node.description) > 40, node.key
        assert node.group_name == node.key.path[0], node.key
        assert node.owners == ["team:data-platform"], node.key
    assert {n.group_name for n in nodes} == {"source", "raw", "warehouse", "marts"}


def test_graph_layers_and_partitions():
    graph = defs.resolve_asset_graph()
    keys = {n.key.to_user_string(): n for n in graph.asset_nodes}
    for topic in ("transactions", "product_views", "cart_events", "inventory_events"):
        assert keys[f"raw/{topic}"].is_external and keys[f"raw/{topic}"].partitions_def
    for name in ("fact_sales", "fact_sessions"):
        assert keys[f"warehouse/{name}"].partitions_def is not None
    for name in ("dim_date", "dim_customer", "dim_product", "dim_location"):
        assert keys[f"warehouse/{name}"].partitions_def is None
    assert keys["marts/customer_rfm_analysis"].freshness_policy is not None
    assert keys["marts/sales_trends"].freshness_policy is not None
    assert graph.get(dg.AssetKey(["marts", "sales_trends"])).parent_keys == {
        dg.AssetKey(["warehouse", "fact_sales"])}


def test_every_warehouse_table_has_key_checks_and_facts_have_foreign_key_checks():
    checks = {(k.asset_key.to_user_string(), k.name)
              for c in defs.asset_checks or [] for k in c.check_keys}
    for table in ("dim_date", "dim_customer", "dim_product", "dim_location", "fact_sales",
                  "fact_sessions"):
        assert (f"warehouse/{table}", "unique_keys") in checks
        assert (f"warehouse/{table}", "no_null_keys") in checks
    assert ("warehouse/fact_sales", "foreign_keys_exist") in checks
    assert ("warehouse/fact_sessions", "foreign_keys_exist") in checks
    assert ("warehouse/fact_sales", "revenue_reconciles") in checks
    assert ("warehouse/fact_sales", "freshness_check") in checks


def test_automation():
    repository = defs.get_repository_def()
    assert not defs.schedules  # a day is built when complete, which no clock can tell
    assert not repository.schedule_defs
    sensors = {s.name for s in defs.sensors or []}
    assert sensors == {"complete_days_sensor", "failed_run_alerts", "failed_check_alerts",
                       "freshness_checks_sensor"}
    job = defs.resolve_job_def("daily_warehouse_job")
    assert job.partitions_def is not None
    assert defs.resolve_job_def("latest_marts_job").partitions_def is not None


def test_secrets_are_read_at_run_time(monkeypatch):
    monkeypatch.setenv("GLOBALMART_DATABASE_URL", "postgresql://u:secret@db.example:5432/gm")
    resources = build_resources()
    assert isinstance(resources["warehouse"].database_url, dg.EnvVar)
    monkeypatch.delenv("GLOBALMART_DATABASE_URL")
    resources = build_resources()
    assert resources["warehouse"].database_url.startswith("postgresql://postgres@127.0.0.1:")


def test_workspace_loads_with_the_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
