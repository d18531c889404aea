"""Sales metrics: revenue per tumbling window, category and country, and order figures.

Money stays exact end to end: amounts are summed as integer cents (a line's revenue is
``quantity × unit_price``) and leave as two-place decimals, so the tables reconcile with the
events to the cent. Windows are aligned on the epoch, as Spark's tumbling windows are.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
CENT = Decimal("0.01")

LINE_COLUMNS = ["transaction_id", "user_id", "event_time", "country", "product_id", "category",
                "quantity", "line_cents"]
ORDER_COLUMNS = ["transaction_id", "user_id", "event_time", "country", "total_cents",
                 "lines_cents", "units", "max_quantity"]
SALES_COLUMNS = ["window_start", "window_end", "category", "country", "total_amount",
                 "transaction_count", "avg_transaction_value", "units_sold"]
ORDER_METRIC_COLUMNS = ["window_start", "window_end", "country", "order_count", "revenue",
                        "billed_amount", "units_sold", "min_order_value", "max_order_value"]


def cents(amount: Decimal) -> int:
    """A two-place decimal as integer cents (exact)."""
    return int(amount.scaleb(2))


def money(value: int) -> Decimal:
    """Integer cents as a two-place decimal."""
    return Decimal(int(value)).scaleb(-2)


def _times(events: pd.Series) -> list:
    return [e.event_time for e in events]


def orders(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per valid transaction (rows of :func:`streaming.transforms.parse.validate`):
    transaction_id, user_id, event_time, country, total_cents (as sent), lines_cents
    (Σ quantity × unit_price), units and max_quantity (of a line)."""
    rows = []
    for e in transactions["event"]:
        line_cents = [item.quantity * cents(item.unit_price) for item in e.items]
        quantities = [item.quantity for item in e.items]
        rows.append((e.transaction_id, e.user_id, e.country, cents(e.total_amount),
                     sum(line_cents), sum(quantities), max(quantities)))
    frame = pd.DataFrame(rows, columns=["transaction_id", "user_id", "country", "total_cents",
                                        "lines_cents", "units", "max_quantity"])
    frame.insert(2, "event_time", pd.to_datetime(_times(transactions["event"]), utc=True))
    return frame.astype({"total_cents": "int64", "lines_cents": "int64", "units": "int64",
                         "max_quantity": "int64"})


def transaction_lines(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per line of the valid transactions: transaction_id, user_id, event_time, country,
    product_id, category, quantity, line_cents."""
    rows = [(e.transaction_id, e.user_id, e.event_time, e.country, item.product_id,
             item.category, item.quantity, item.quantity * cents(item.unit_price))
            for e in transactions["event"] for item in e.items]
    frame = pd.DataFrame(rows, columns=LINE_COLUMNS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame.astype({"quantity": "int64", "line_cents": "int64"})


def _window(times: pd.Series, width: timedelta) -> pd.Series:
    return times.dt.floor(pd.Timedelta(width))


def _average(total: Decimal, count: int) -> Decimal:
    return (total / count).quantize(CENT, ROUND_HALF_UP)


def sales_metrics(lines: pd.DataFrame, window: timedelta = MINUTE) -> pd.DataFrame:
    """Revenue per tumbling ``window`` × category × country from :func:`transaction_lines`;
    each line's revenue counts in its own category. Columns: window_start, window_end,
    category, country, total_amount, transaction_count (transactions with a line in the
    category), avg_transaction_value, units_sold."""
    if lines.empty:
        return pd.DataFrame(columns=SALES_COLUMNS)
    grouped = (lines.assign(window_start=_window(lines["event_time"], window))
               .groupby(["window_start", "category", "country"], sort=True)
               .agg(total_cents=("line_cents", "sum"),
                    transaction_count=("transaction_id", "nunique"),
                    units_sold=("quantity", "sum"))
               .reset_index())
    grouped["window_end"] = grouped["window_start"] + pd.Timedelta(window)
    grouped["total_amount"] = [money(c) for c in grouped["total_cents"]]
    grouped["avg_transaction_value"] = [
        _average(t, n) for t, n in zip(grouped["total_amount"], grouped["transaction_count"],
                                       strict=True)]
    return grouped[SALES_COLUMNS]


def order_metrics(order_rows: pd.DataFrame, window: timedelta = MINUTE) -> pd.DataFrame:
    """Order-level figures per tumbling ``window`` × country from :func:`orders` (each
    transaction once): window_start, window_end, country, order_count, revenue (Σ lines),
    billed_amount (Σ total_amount as sent), units_sold, and the smallest and largest order
    (Σ lines)."""
    if order_rows.empty:
        return pd.DataFrame(columns=ORDER_METRIC_COLUMNS)
    grouped = (order_rows.assign(window_start=_window(order_rows["event_time"], window))
               .groupby(["window_start", "country"], sort=True)
               .agg(order_count=("transaction_id", "size"), revenue=("lines_cents", "sum"),
                    billed_amount=("total_cents", "sum"), units_sold=("units", "sum"),
                    min_order_value=("lines_cents", "min"),
                    max_order_value=("lines_cents", "max"))
               .reset_index())
    grouped["window_end"] = grouped["window_start"] + pd.Timedelta(window)
    for column in ("revenue", "billed_amount", "min_order_value", "max_order_value"):
        grouped[column] = [money(c) for c in grouped[column]]
    return grouped[ORDER_METRIC_COLUMNS]
