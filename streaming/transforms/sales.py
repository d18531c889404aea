"""Sales metrics: revenue per tumbling window, category and country, and order figures.

Money stays exact end to end: amounts are summed as integer cents (a line's revenue is
``quantity × unit_price``) and leave as two-place decimals, so the tables reconcile with the
events to the cent. Windows are aligned on the epoch, as Spark's tumbling windows are.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def _cents(amounts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Two-place decimals as integer cents (exact)."""
    return pc.cast(pc.multiply(amounts, pa.scalar(Decimal(100), pa.decimal128(3, 0))),
                   pa.int64()).to_numpy()


class _Lines(NamedTuple):
    """The line items of some transactions, flattened: each line's transaction (its position
    among them), product, category, quantity and revenue in cents."""

    parents: np.ndarray
    product_id: np.ndarray
    category: np.ndarray
    quantity: np.ndarray
    cents: np.ndarray


def _lines(transactions: pd.DataFrame) -> _Lines:
    items = pa.array(transactions["items"])
    lines = pc.list_flatten(items)
    quantity = pc.struct_field(lines, "quantity").to_numpy().astype("int64")
    return _Lines(pc.list_parent_indices(items).to_numpy(),
                  pc.struct_field(lines, "product_id").to_numpy(zero_copy_only=False),
                  pc.struct_field(lines, "category").to_numpy(zero_copy_only=False),
                  quantity, quantity * _cents(pc.struct_field(lines, "unit_price")))


def _per_transaction(lines: _Lines, count: int) -> pd.DataFrame:
    """Per transaction (0 … count-1): lines_cents, units and max_quantity of its lines."""
    return (pd.DataFrame({"parent": lines.parents, "cents": lines.cents,
                          "quantity": lines.quantity})
            .groupby("parent").agg(lines_cents=("cents", "sum"), units=("quantity", "sum"),
                                   max_quantity=("quantity", "max"))
            .reindex(range(count), fill_value=0))


def line_totals(transactions: pd.DataFrame) -> np.ndarray:
    """Σ quantity × unit_price of each valid transaction's lines, in cents, in order."""
    return _per_transaction(_lines(transactions), len(transactions))["lines_cents"].to_numpy()


def orders(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per valid transaction (rows of :func:`streaming.transforms.parse.validate`):
    transaction_id, user_id, event_time, country, total_cents (as sent), lines_cents
    (Σ quantity × unit_price), units and max_quantity (of a line)."""
    per = _per_transaction(_lines(transactions), len(transactions))
    return pd.DataFrame({
        "transaction_id": transactions["transaction_id"].to_numpy(),
        "user_id": transactions["user_id"].to_numpy(),
        "event_time": transactions["event_time"].array,
        "country": transactions["country"].to_numpy(),
        "total_cents": _cents(pa.array(transactions["total_amount"])),
        **{name: per[name].to_numpy(dtype="int64") for name in per.columns}},
        columns=ORDER_COLUMNS)


def transaction_lines(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per line of the valid transactions: transaction_id, user_id, event_time, country,
    product_id, category, quantity, line_cents."""
    lines = _lines(transactions)
    return pd.DataFrame({
        "transaction_id": transactions["transaction_id"].to_numpy()[lines.parents],
        "user_id": transactions["user_id"].to_numpy()[lines.parents],
        "event_time": transactions["event_time"].array.take(lines.parents),
        "country": transactions["country"].to_numpy()[lines.parents],
        "product_id": lines.product_id, "category": lines.category,
        "quantity": lines.quantity, "line_cents": lines.cents}, columns=LINE_COLUMNS)


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
