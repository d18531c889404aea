"""The platform's shared vocabulary: the names and thresholds more than one component uses
(the generator, the stream, Dagster, the API, Grafana), each defined once here.

The event contracts' own vocabularies (countries, payment methods, devices, ...) live with the
contracts in :mod:`globalmart.contracts`; stock statuses are computed in PostgreSQL by
``stream_state.stock_status`` (migration 002), whose values are listed here."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, get_args

# Alerts
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
# Alert types of Dagster's alert sensors (the stream raises anomaly_* and stock_* alerts); a
# failed check's alert names it as entity "<asset key>:<check name>".
DAGSTER_RUN_FAILED = "dagster_run_failed"
DAGSTER_CHECK_FAILED = "dagster_check_failed"
# The check that reconciles the warehouse with the raw layer and the stream's day ledger
RECONCILIATION_CHECK = "revenue_reconciles"

# Stock (thresholds: out <= 0 < critical <= 5 < low <= 10 < ok, in stream_state.stock_status)
StockStatus = Literal["ok", "low", "critical", "out"]
STOCK_STATUSES: tuple[str, ...] = get_args(StockStatus)
SHORT_OF_STOCK: tuple[str, ...] = ("low", "critical", "out")

# RFM segments of the customer mart
Segment = Literal["Champions", "Loyal Customers", "Potential Loyalists", "New Customers",
                  "At Risk", "Cannot Lose Them", "Hibernating", "Lost"]
SEGMENTS: tuple[str, ...] = get_args(Segment)

# Transaction anomaly rules: the stream detects them, the generator injects them.
ANOMALY_RULES: tuple[str, ...] = ("high_value", "unusual_quantity", "rapid_fire",
                                  "total_mismatch")
HIGH_VALUE_THRESHOLD = Decimal("5000.00")  # high_value: total_amount above it
MAX_LINE_QUANTITY = 10  # unusual_quantity: some line's quantity above it
RAPID_FIRE_COUNT = 5  # rapid_fire: at least the 5th transaction of a user ...
RAPID_FIRE_WINDOW_SECONDS = 60  # ... within (t - 60 s, t]

# The streaming application's queries (as recorded in pipeline_metrics and batch_commits)
REALTIME_QUERY = "realtime"
RAW_QUERY = "raw"


def sql_list(values: tuple[str, ...]) -> str:
    """Values as an SQL list of literals, for a query text: ``('low', 'critical', 'out')``."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"
