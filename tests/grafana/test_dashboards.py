"""The provisioned Grafana dashboards: generated code and committed JSON agree, every dashboard
fits Grafana's dashboard model, and every panel's SQL runs on PostgreSQL (macros expanded)
and returns the columns its panel type needs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import yaml

from .conftest import PROVISIONING  # noqa: TID252
from .macros import expand, interval_seconds  # noqa: TID252

PANEL_TYPES = {"stat", "timeseries", "geomap", "table", "barchart", "piechart", "bargauge",
               "gauge", "text"}
FORMATS = {"table", "time_series"}
REQUIRED = {"uid", "title", "panels", "schemaVersion", "time", "refresh", "tags", "timezone",
            "templating", "annotations", "editable", "version"}
NUMBER = (int, float, Decimal)


def _datasource() -> dict:
    config = yaml.safe_load((PROVISIONING / "datasources" / "globalmart.yaml").read_text())
    (source,) = config["datasources"]
    return source


def _panels(dashboards):
    for name, board in dashboards.items():
        for panel in board["panels"]:
            yield pytest.param(board, panel, id=f"{name}:{panel['id']}:{panel['title']}")


def test_committed_json_matches_the_generator(build_module):
    committed = {path.name: path.read_text()
                 for path in (PROVISIONING / "dashboards" / "json").glob("*.json")}
    assert committed == build_module.render(), "run .venv/bin/python grafana/build.py"


def test_datasource_reads_credentials_from_the_environment():
    source = _datasource()
    assert source["type"] == "grafana-postgresql-datasource"
    for value in (source["url"], source["user"], source["jsonData"]["database"],
                  source["secureJsonData"]["password"]):
        assert re.fullmatch(r"\$\{GLOBALMART_GRAFANA_[A-Z_]+\}", value), value
    assert "password" not in source  # only in secureJsonData


def test_provider_points_at_the_json_folder():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "globalmart.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/provisioning/dashboards/json")


def test_the_five_dashboards_exist(dashboards):
    titles = {board["title"] for board in dashboards.values()}
    assert len(titles) == len(dashboards) == 5
    assert len({board["uid"] for board in dashboards.values()}) == 5
    geomaps = [p for board in dashboards.values() for p in board["panels"]
               if p["type"] == "geomap"]
    assert geomaps, "the geographic dashboard needs a geomap panel"
    pipeline = next(b for b in dashboards.values() if b["uid"] == "globalmart-pipeline")
    sql = " ".join(p["targets"][0]["rawSql"] for p in pipeline["panels"])
    for needed in ("input_rows", "lag_records", "batch_duration_ms", "data_as_of"):
        assert needed in sql


def test_dashboard_model(dashboards):
    datasource = _datasource()
    for name, board in dashboards.items():
        assert set(board) >= REQUIRED, (name, REQUIRED - set(board))
        assert "dashboard" not in board  # file provisioning wants the model itself
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
        assert board["time"]["from"].startswith("now-") and board["time"]["to"] == "now"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            assert panel["type"] in PANEL_TYPES, panel["type"]
            assert panel["title"]
            pos = panel["gridPos"]
            assert all(isinstance(pos[k], int) for k in ("h", "w", "x", "y")), panel["title"]
            assert pos["w"] >= 1 and pos["h"] >= 1 and pos["x"] >= 0 and pos["y"] >= 0
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not mine & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= mine
            assert panel["datasource"] == {"type": datasource["type"], "uid": datasource["uid"]}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["refId"] and target["rawSql"].strip() and target["rawQuery"]
                assert target["format"] in FORMATS
                assert target["datasource"] == panel["datasource"]
            if panel["type"] == "timeseries":
                assert panel["targets"][0]["format"] == "time_series"
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit is None or isinstance(unit, str)


def _time_range(board: dict) -> tuple[datetime, datetime]:
    end = datetime.now(UTC)
    span = board["time"]["from"].removeprefix("now-")
    return end - timedelta(seconds=interval_seconds(span)), end


def _numeric_columns(names: list[str], rows: list[tuple]) -> list[str]:
    return [name for i, name in enumerate(names)
            if any(isinstance(row[i], NUMBER) and not isinstance(row[i], bool) for row in rows)]


COMMITTED = {path.name: json.loads(path.read_text())
             for path in sorted((PROVISIONING / "dashboards" / "json").glob("*.json"))}


@pytest.mark.parametrize(("board", "panel"), list(_panels(COMMITTED)))
def test_panel_sql_returns_what_the_panel_needs(grafana_db, board, panel):
    start, end = _time_range(board)
    target = panel["targets"][0]
    sql = expand(target["rawSql"], start, end, interval="1m")
    with psycopg.connect(grafana_db) as conn:
        cur = conn.execute(sql)
        names = [column.name for column in cur.description]
        rows = cur.fetchall()
    assert rows, f"{panel['title']}: no rows from the dataset"
    numeric = _numeric_columns(names, rows)
    kind = panel["type"]
    if kind == "timeseries":
        assert "time" in names
        times = [row[names.index("time")] for row in rows]
        assert all(isinstance(t, (*NUMBER, datetime)) for t in times)
        assert [n for n in numeric if n != "time"], names
        if "metric" in names:
            assert all(isinstance(row[names.index("metric")], str) for row in rows)
    elif kind == "geomap":
        layer = panel["options"]["layers"][0]
        location = layer["location"]
        if location["mode"] == "coords":
            for field in (location["latitude"], location["longitude"]):
                assert field in numeric, field
                assert all(-180 <= float(row[names.index(field)]) <= 180 for row in rows)
        else:
            assert location["lookup"] in names
        size_field = layer["config"]["style"]["size"]["field"]
        assert size_field in numeric
    elif kind == "stat":
        assert len(rows) == 1 and numeric, (names, rows)
    elif kind in ("piechart", "barchart", "bargauge"):
        labels = [n for i, n in enumerate(names) if isinstance(rows[0][i], str)]
        assert labels and numeric, names
        if kind == "barchart":
            assert panel["options"]["xField"] in labels
    elif kind == "table":
        assert names
