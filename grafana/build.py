"""Generate the Grafana dashboards (JSON files under provisioning/dashboards/json/) and alert
rules (provisioning/alerting/globalmart.yaml).

Both are code: edit this file, run ``.venv/bin/python grafana/build.py`` and commit the
output. ``tests/grafana`` fails when the files and this generator disagree, validates every
dashboard against Grafana's dashboard model, runs every panel's and rule's SQL on PostgreSQL,
and makes each rule fire on data that should fire it (and stay quiet otherwise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from globalmart.geo import COUNTRY_GEO
from globalmart.vocabulary import (
    DAGSTER_CHECK_FAILED,
    RECONCILIATION_CHECK,
    SHORT_OF_STOCK,
    sql_list,
)

PROVISIONING = Path(__file__).resolve().parent / "provisioning"
OUT = PROVISIONING / "dashboards" / "json"
RULES = PROVISIONING / "alerting" / "globalmart.yaml"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "globalmart-pg"}
SCHEMA_VERSION = 39

GEO_VALUES = ", ".join(f"('{name}', '{iso}', {lat}, {lon})"
                       for name, (iso, lat, lon) in COUNTRY_GEO.items())


class Board:
    """Lays panels out left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def add(self, kind: str, title: str, sql: str, *, w: int, h: int, fmt: str = "table",
            unit: str | None = None, description: str = "", options: dict | None = None,
            field_defaults: dict | None = None) -> None:
        """Append a panel of ``kind`` with one raw-SQL query."""
        if self._x + w > 24:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        defaults: dict[str, Any] = dict(field_defaults or {})
        if unit:
            defaults["unit"] = unit
        self.panels.append({
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y},
            "targets": [{"refId": "A", "datasource": DATASOURCE, "editorMode": "code",
                         "format": fmt, "rawQuery": True, "rawSql": " ".join(sql.split())}],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {},
        })
        self._x += w
        self._row_height = max(self._row_height, h)


def dashboard(uid: str, title: str, board: Board, *, refresh: str, time_from: str,
              tags: list[str], description: str) -> dict[str, Any]:
    """A complete dashboard model, as Grafana's file provisioning reads it."""
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["globalmart", *tags], "timezone": "utc", "editable": False,
        "graphTooltip": 1, "refresh": refresh, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []}, "templating": {"list": []}, "links": [],
        "panels": board.panels,
    }


STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value", "graphMode": "none", "textMode": "value"}
LEGEND = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
          "tooltip": {"mode": "multi", "sort": "desc"}}
TABLE = {"showHeader": True, "cellHeight": "sm"}


def executive() -> dict[str, Any]:
    """Revenue, orders, average order value, active users, anomalies; trends and mix."""
    b = Board()
    b.add("stat", "Revenue", "SELECT coalesce(sum(revenue), 0) AS revenue FROM order_metrics "
          "WHERE $__timeFilter(window_start)", w=5, h=4, unit="currencyUSD", options=STAT,
          description="Order revenue (sum of lines) in the selected time range.")
    b.add("stat", "Orders", "SELECT coalesce(sum(order_count), 0) AS orders FROM order_metrics "
          "WHERE $__timeFilter(window_start)", w=5, h=4, unit="short", options=STAT)
    b.add("stat", "Average order value", "SELECT coalesce(sum(revenue) / nullif(sum(order_count), "
          "0), 0) AS aov FROM order_metrics WHERE $__timeFilter(window_start)", w=5, h=4,
          unit="currencyUSD", options=STAT)
    b.add("stat", "Active users (30 min)", "SELECT count(DISTINCT user_id) AS active_users "
          "FROM session_metrics WHERE session_end >= now() - interval '30 minutes'", w=5, h=4,
          unit="short", options=STAT,
          description="Distinct users with session activity in the last 30 minutes.")
    b.add("stat", "Anomalies", "SELECT count(*) AS anomalies FROM transaction_anomalies "
          "WHERE $__timeFilter(detected_at)", w=4, h=4, unit="short", options=STAT,
          field_defaults={"color": {"mode": "thresholds"}, "thresholds": {"mode": "absolute",
                          "steps": [{"color": "green", "value": None},
                                    {"color": "orange", "value": 10},
                                    {"color": "red", "value": 50}]}})
    b.add("timeseries", "Revenue and orders over time",
          "SELECT $__timeGroupAlias(window_start, $__interval), sum(revenue) AS revenue, "
          "sum(order_count) AS orders FROM order_metrics WHERE $__timeFilter(window_start) "
          "GROUP BY 1 ORDER BY 1", w=16, h=9, fmt="time_series", unit="currencyUSD",
          options=LEGEND)
    b.add("piechart", "Revenue by country",
          "SELECT country AS metric, sum(revenue) AS revenue FROM order_metrics "
          "WHERE $__timeFilter(window_start) GROUP BY country ORDER BY revenue DESC",
          w=8, h=9, unit="currencyUSD",
          options={"reduceOptions": {"calcs": ["lastNotNull"], "values": True},
                   "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                  "values": ["value", "percent"]}})
    b.add("barchart", "Revenue by category",
          "SELECT category, sum(total_amount) AS revenue FROM sales_metrics "
          "WHERE $__timeFilter(window_start) GROUP BY category ORDER BY revenue DESC",
          w=12, h=9, unit="currencyUSD",
          options={"orientation": "horizontal", "xField": "category", "showValue": "auto"})
    b.add("table", "Sales summary by period",
          "SELECT trend_type AS period, date AS starting, revenue, orders, "
          "average_order_value, growth FROM (SELECT *, row_number() OVER (PARTITION BY "
          "trend_type ORDER BY date DESC) AS n FROM marts.sales_trends) t WHERE n = 1 "
          "ORDER BY trend_type", w=12, h=9, options=TABLE,
          description="Latest day, week and month of the sales-trends mart.")
    return dashboard("globalmart-executive", "GlobalMart · Executive", b, refresh="30s",
                     time_from="now-24h", tags=["executive"],
                     description="Key business figures from the real-time tables and marts.")


def geography() -> dict[str, Any]:
    """Sales by country on a map, in a table and over time."""
    b = Board()
    b.add("geomap", "Revenue by country",
          f"SELECT o.country, g.iso3, g.lat, g.lon, sum(o.revenue) AS revenue, "
          f"sum(o.order_count) AS orders FROM order_metrics o JOIN (VALUES {GEO_VALUES}) "
          f"AS g(country, iso3, lat, lon) ON g.country = o.country "
          f"WHERE $__timeFilter(o.window_start) GROUP BY o.country, g.iso3, g.lat, g.lon",
          w=14, h=14, unit="currencyUSD",
          options={"view": {"id": "coords", "lat": 48, "lon": -40, "zoom": 2},
                   "controls": {"showZoom": True, "mouseWheelZoom": False},
                   "basemap": {"type": "default", "name": "Basemap"},
                   "layers": [{"type": "markers", "name": "Revenue",
                               "location": {"mode": "coords", "latitude": "lat",
                                            "longitude": "lon"},
                               "config": {"showLegend": True, "style": {
                                   "size": {"field": "revenue", "min": 8, "max": 40,
                                            "fixed": 10},
                                   "color": {"field": "revenue"},
                                   "text": {"field": "country", "mode": "field"}}}}]},
          field_defaults={"color": {"mode": "continuous-BlYlRd"}})
    b.add("table", "Countries", "SELECT country, sum(revenue) AS revenue, sum(order_count) "
          "AS orders, sum(units_sold) AS units, round(sum(revenue) / nullif(sum(order_count), "
          "0), 2) AS avg_order_value FROM order_metrics WHERE $__timeFilter(window_start) "
          "GROUP BY country ORDER BY revenue DESC", w=10, h=14, options=TABLE)
    b.add("timeseries", "Revenue per country over time",
          "SELECT $__timeGroupAlias(window_start, $__interval), country AS metric, "
          "sum(revenue) AS value FROM order_metrics WHERE $__timeFilter(window_start) "
          "GROUP BY 1, 2 ORDER BY 1", w=24, h=9, fmt="time_series", unit="currencyUSD",
          options=LEGEND)
    b.add("barchart", "Top categories per country",
          "SELECT country || ' · ' || category AS country_category, sum(total_amount) AS "
          "revenue FROM sales_metrics WHERE $__timeFilter(window_start) GROUP BY country, "
          "category ORDER BY revenue DESC LIMIT 15", w=24, h=9, unit="currencyUSD",
          options={"orientation": "horizontal", "xField": "country_category"})
    return dashboard("globalmart-geography", "GlobalMart · Geographic sales", b,
                     refresh="1m", time_from="now-24h", tags=["geography"],
                     description="Where the sales come from (USA, UK, Canada, Germany, France).")


def categories() -> dict[str, Any]:
    """Category mix, category trends, top products and customer segments."""
    b = Board()
    b.add("barchart", "Revenue by category",
          "SELECT category, sum(total_amount) AS revenue, sum(units_sold) AS units FROM "
          "sales_metrics WHERE $__timeFilter(window_start) GROUP BY category "
          "ORDER BY revenue DESC", w=12, h=9, unit="currencyUSD",
          options={"orientation": "horizontal", "xField": "category"})
    b.add("timeseries", "Revenue per category over time",
          "SELECT $__timeGroupAlias(window_start, $__interval), category AS metric, "
          "sum(total_amount) AS value FROM sales_metrics WHERE $__timeFilter(window_start) "
          "GROUP BY 1, 2 ORDER BY 1", w=12, h=9, fmt="time_series", unit="currencyUSD",
          options=LEGEND)
    b.add("table", "Top products (latest snapshot)",
          "SELECT product_name, category, units_sold, total_revenue, avg_price, "
          "round(performance_score::numeric, 3) AS score, rank_in_category FROM "
          "marts.product_performance WHERE analysis_date = (SELECT max(analysis_date) FROM "
          "marts.product_performance) ORDER BY total_revenue DESC LIMIT 20", w=14, h=10,
          options=TABLE)
    b.add("piechart", "Customer segments (RFM)",
          "SELECT rfm_segment AS metric, count(*) AS customers FROM marts.customer_rfm_analysis "
          "WHERE analysis_date = (SELECT max(analysis_date) FROM marts.customer_rfm_analysis) "
          "GROUP BY rfm_segment ORDER BY customers DESC", w=10, h=10, unit="short",
          options={"reduceOptions": {"calcs": ["lastNotNull"], "values": True},
                   "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                  "values": ["value", "percent"]}})
    b.add("timeseries", "Daily revenue and 7-day moving average",
          "SELECT date::timestamp AT TIME ZONE 'UTC' AS time, revenue, moving_average FROM "
          "marts.sales_trends WHERE trend_type = 'daily' ORDER BY date DESC LIMIT 120",
          w=24, h=9, fmt="time_series", unit="currencyUSD", options=LEGEND,
          description="From the sales-trends mart (independent of the time picker).")
    return dashboard("globalmart-categories", "GlobalMart · Categories and products", b,
                     refresh="1m", time_from="now-24h", tags=["categories", "products"],
                     description="Category performance, best products and RFM segments.")


def realtime() -> dict[str, Any]:
    """Sales per minute, anomalies, low stock, sessions and alerts."""
    b = Board()
    b.add("stat", "Orders per minute (last 5 min)",
          "SELECT coalesce(sum(order_count), 0) / 5.0 AS orders_per_minute FROM order_metrics "
          "WHERE window_start >= now() - interval '5 minutes'", w=6, h=4, unit="short",
          options=STAT)
    b.add("stat", "Active sessions (30 min)",
          "SELECT count(*) AS sessions FROM session_metrics "
          "WHERE session_end >= now() - interval '30 minutes'", w=6, h=4, unit="short",
          options=STAT)
    b.add("stat", "Cart abandonment (24 h)",
          "SELECT (SELECT count(*) FROM cart_abandonment WHERE detected_at >= now() - "
          "interval '24 hours')::float / nullif((SELECT count(*) FROM session_metrics WHERE "
          "session_end >= now() - interval '24 hours' AND cart_adds > 0), 0) AS rate",
          w=6, h=4, unit="percentunit", options=STAT)
    b.add("stat", "Low-stock products",
          "SELECT count(*) AS products FROM inventory_status "
          f"WHERE status IN {sql_list(SHORT_OF_STOCK)}",
          w=6, h=4, unit="short", options=STAT)
    b.add("timeseries", "Sales per minute",
          "SELECT $__timeGroupAlias(window_start, '1m'), sum(revenue) AS revenue FROM "
          "order_metrics WHERE $__timeFilter(window_start) GROUP BY 1 ORDER BY 1",
          w=24, h=8, fmt="time_series", unit="currencyUSD", options=LEGEND)
    b.add("timeseries", "Anomalies by type",
          "SELECT $__timeGroupAlias(detected_at, '5m'), anomaly_type AS metric, count(*) AS "
          "value FROM transaction_anomalies WHERE $__timeFilter(detected_at) GROUP BY 1, 2 "
          "ORDER BY 1", w=12, h=8, fmt="time_series", unit="short",
          options={**LEGEND, "drawStyle": "bars"})
    b.add("table", "Latest anomalies",
          "SELECT detected_at, anomaly_type, round(anomaly_score::numeric, 2) AS score, amount, "
          "user_id, description FROM transaction_anomalies WHERE $__timeFilter(detected_at) "
          "ORDER BY detected_at DESC LIMIT 50", w=12, h=8, options=TABLE)
    b.add("table", "Low stock",
          "SELECT product_id, product_name, category, current_stock, status, updated_at "
          f"FROM inventory_status WHERE status IN {sql_list(SHORT_OF_STOCK)} "
          "ORDER BY current_stock, product_id LIMIT 50", w=12, h=9, options=TABLE)
    b.add("table", "Alerts",
          "SELECT created_at, severity, alert_type, entity_id, message FROM alerts "
          "WHERE $__timeFilter(created_at) ORDER BY created_at DESC LIMIT 50", w=12, h=9,
          options=TABLE)
    return dashboard("globalmart-realtime", "GlobalMart · Real-time operations", b,
                     refresh="10s", time_from="now-1h", tags=["realtime", "operations"],
                     description="What the streaming job sees right now.")


FRESHNESS_SQL = " UNION ALL ".join(
    f"SELECT '{name}' AS source, {kind} AS kind, {expr} AS data_as_of FROM {table}"
    for name, kind, expr, table in (
        ("sales_metrics", "'real-time'", "LEAST(max(window_end), max(updated_at))",
         "sales_metrics"),
        ("order_metrics", "'real-time'", "LEAST(max(window_end), max(updated_at))",
         "order_metrics"),
        ("transaction_anomalies", "'real-time'", "max(detected_at)", "transaction_anomalies"),
        ("inventory_status", "'real-time'", "max(updated_at)", "inventory_status"),
        ("session_metrics", "'real-time'", "max(updated_at)", "session_metrics"),
        ("alerts", "'real-time'", "max(created_at)", "alerts"),
        ("customer_rfm_analysis", "'mart'",
         "LEAST((max(analysis_date) + 1)::timestamp AT TIME ZONE 'UTC', now())",
         "marts.customer_rfm_analysis"),
        ("product_performance", "'mart'",
         "LEAST((max(analysis_date) + 1)::timestamp AT TIME ZONE 'UTC', now())",
         "marts.product_performance"),
        ("sales_trends", "'mart'", "LEAST((max(date) FILTER (WHERE trend_type = 'daily') + 1)"
         "::timestamp AT TIME ZONE 'UTC', now())", "marts.sales_trends"),
    )
)


def pipeline() -> dict[str, Any]:
    """Ingestion rate per topic, lag, batch durations, dead letters and freshness."""
    b = Board()
    b.add("timeseries", "Ingestion rate per topic",
          "SELECT time, topic AS metric, max(records) / 60.0 AS value FROM (SELECT "
          "$__timeGroupAlias(processed_at, '1m'), topic, query_name, sum(input_rows) AS records "
          "FROM pipeline_metrics WHERE $__timeFilter(processed_at) AND topic <> '*' "
          "GROUP BY 1, 2, 3) per_query "
          "GROUP BY 1, 2 ORDER BY 1", w=12, h=8, fmt="time_series", unit="suffix: rec/s",
          options=LEGEND,
          description="Records read per second from each topic (the busiest query reading it).")
    b.add("timeseries", "Consumer lag per topic",
          "SELECT $__timeGroupAlias(processed_at, '1m'), topic AS metric, max(lag_records) "
          "AS value FROM pipeline_metrics WHERE $__timeFilter(processed_at) AND topic <> '*' "
          "GROUP BY 1, 2 ORDER BY 1", w=12, h=8, fmt="time_series", unit="short",
          options=LEGEND,
          description="Records behind the log end at each micro-batch.")
    b.add("timeseries", "Batch duration per query",
          "SELECT $__timeGroupAlias(processed_at, '1m'), query_name AS metric, "
          "avg(batch_duration_ms) AS value FROM pipeline_metrics WHERE "
          "$__timeFilter(processed_at) GROUP BY 1, 2 ORDER BY 1", w=12, h=8,
          fmt="time_series", unit="ms", options=LEGEND)
    b.add("timeseries", "Processing rate per query",
          "SELECT time, query_name AS metric, avg(rate) AS value FROM (SELECT "
          "$__timeGroupAlias(processed_at, '1m'), query_name, batch_id, "
          "sum(processed_rows_per_second) AS rate FROM pipeline_metrics WHERE "
          "$__timeFilter(processed_at) GROUP BY 1, 2, 3) per_batch GROUP BY 1, 2 ORDER BY 1",
          w=12, h=8, fmt="time_series", unit="suffix: rows/s", options=LEGEND,
          description="Rows processed per second by each query (its topics' shares added up).")
    b.add("stat", "Dead letters", "SELECT count(*) AS rejected FROM dead_letter "
          "WHERE $__timeFilter(rejected_at)", w=6, h=5, unit="short", options=STAT,
          description="Input records rejected by validation in the time range.")
    b.add("stat", "Last batch", "SELECT extract(epoch FROM now() - max(processed_at)) AS "
          "seconds_ago FROM pipeline_metrics", w=6, h=5, unit="s", options=STAT,
          description="Seconds since the streaming job last finished a micro-batch.")
    b.add("table", "Freshness of every table",
          f"SELECT source, kind, data_as_of, extract(epoch FROM now() - data_as_of) AS "
          f"age_seconds FROM ({FRESHNESS_SQL}) f ORDER BY kind, source", w=12, h=10,
          options=TABLE,
          description="Latest window (real-time tables) or analysed day (marts).")
    return dashboard("globalmart-pipeline", "GlobalMart · Pipeline health", b, refresh="10s",
                     time_from="now-1h", tags=["pipeline", "monitoring"],
                     description="Ingestion monitoring: rates, lag, batch durations, freshness.")


DASHBOARDS = {"executive": executive, "geography": geography, "categories": categories,
              "realtime": realtime, "pipeline": pipeline}

# Alert thresholds
LAG_ALERT_RECORDS = 100_000  # records behind the log end (over 3 minutes at 500 events/s)
# A mart is stale when its latest analysed day ended more than this long ago: the day that
# closed at midnight is due by 03:00 UTC (the marts' freshness policy in Dagster).
STALE_MART_HOURS = 27
RECONCILIATION_ALERT_HOURS = 24  # a failed reconciliation alerts for a day


def rule(uid: str, title: str, sql: str, above: float, *, severity: str, summary: str,
         wait: str, no_data: str) -> dict[str, Any]:
    """An alert rule: query A (one row per series, its text columns the labels and one number
    the value) fires for every row whose value is above ``above`` for ``wait``."""
    expression = {"type": "__expr__", "uid": "__expr__"}
    return {
        "uid": uid, "title": title, "condition": "B",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": 600, "to": 0},
             "datasourceUid": DATASOURCE["uid"],
             "model": {"refId": "A", "datasource": dict(DATASOURCE), "editorMode": "code",
                       "format": "table", "rawQuery": True, "rawSql": " ".join(sql.split())}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "datasource": expression, "type": "threshold",
                       "expression": "A",
                       "conditions": [{"evaluator": {"type": "gt", "params": [above]}}]}},
        ],
        "noDataState": no_data, "execErrState": "Error", "for": wait,
        "annotations": {"summary": summary},
        "labels": {"severity": severity},
        "isPaused": False,
    }


def alert_rules() -> dict[str, Any]:
    """Consumer lag, stale marts and a failed reconciliation, as a provisioning file."""
    rules = [
        rule("globalmart-consumer-lag", "Consumer lag",
             "SELECT topic, max(lag_records) AS lag_records FROM pipeline_metrics "
             "WHERE processed_at > now() - interval '5 minutes' AND topic <> '*' "
             "GROUP BY topic", LAG_ALERT_RECORDS, severity="warning", wait="5m",
             no_data="Alerting",  # no batch in five minutes: the stream is down or stuck
             summary=f"The stream is more than {LAG_ALERT_RECORDS:,} records behind on "
                     "{{ $labels.topic }} (or has finished no batch in five minutes)."),
        rule("globalmart-stale-marts", "Stale marts",
             f"SELECT source AS mart, extract(epoch FROM now() - data_as_of) / 3600 "
             f"AS hours_old FROM ({FRESHNESS_SQL}) f "
             f"WHERE kind = 'mart' AND data_as_of IS NOT NULL",
             STALE_MART_HOURS, severity="warning", wait="10m", no_data="OK",
             summary="The mart {{ $labels.mart }} has not been built for the day that closed "
                     "last midnight (due by 03:00 UTC)."),
        rule("globalmart-failed-reconciliation", "Failed reconciliation",
             f"SELECT count(*) AS failed_reconciliations FROM alerts "
             f"WHERE alert_type = '{DAGSTER_CHECK_FAILED}' "
             f"AND entity_id LIKE '%:{RECONCILIATION_CHECK}' "
             f"AND created_at > now() - interval '{RECONCILIATION_ALERT_HOURS} hours'",
             0, severity="critical", wait="0s", no_data="OK",
             summary="A day of the warehouse did not reconcile with the raw layer and the "
                     "stream's ledger (Dagster's revenue_reconciles check failed; see the "
                     "alerts table for the day and run)."),
    ]
    return {"apiVersion": 1,
            "groups": [{"orgId": 1, "name": "GlobalMart", "folder": "GlobalMart",
                        "interval": "1m", "rules": rules}]}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {f"{name}.json": json.dumps(build(), indent=2) + "\n"
            for name, build in DASHBOARDS.items()}


def render_rules() -> str:
    """The YAML text of the alert rules' provisioning file."""
    return ("# Generated by grafana/build.py: edit it there.\n"
            + yaml.safe_dump(alert_rules(), sort_keys=False, width=100))


def main() -> None:
    """Write the dashboards and the alert rules."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        sys.stdout.write(f"{OUT / name}\n")
    RULES.parent.mkdir(parents=True, exist_ok=True)
    RULES.write_text(render_rules())
    sys.stdout.write(f"{RULES}\n")


if __name__ == "__main__":
    main()
