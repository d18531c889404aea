"""Sales and order metrics: a batch's transaction lines summed per minute and per hour window,
category and country (:func:`streaming.transforms.sales.sales_metrics`), and its orders per
minute and country (:func:`streaming.transforms.sales.order_metrics`), added into
``sales_metrics``, ``sales_metrics_hourly`` and ``order_metrics``. The sums are additive: the
batch-commit protocol keeps a replayed batch from counting twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from streaming.sinks.store import copy_temp, frame_rows
from streaming.transforms.parse import of_topic
from streaming.transforms.sales import (
    HOUR,
    MINUTE,
    ORDER_METRIC_COLUMNS,
    order_metrics,
    orders,
    sales_metrics,
    transaction_lines,
)

# The columns of sales_metrics a batch adds to (the average is recomputed from the sums).
SALES_COLUMNS = ["window_start", "window_end", "category", "country", "total_amount",
                 "transaction_count", "units_sold"]


@dataclass(frozen=True)
class SalesRows:
    """A batch's sales sums per minute and per hour window and its order figures, as rows."""

    minute: list[dict[str, Any]]
    hourly: list[dict[str, Any]]
    orders: list[dict[str, Any]]


def sales_rows(order_rows: pd.DataFrame, lines: pd.DataFrame) -> SalesRows:
    """The figures of a batch's :func:`~streaming.transforms.sales.orders` and
    :func:`~streaming.transforms.sales.transaction_lines` (no I/O)."""
    return SalesRows(minute=frame_rows(sales_metrics(lines, MINUTE), SALES_COLUMNS),
                     hourly=frame_rows(sales_metrics(lines, HOUR), SALES_COLUMNS),
                     orders=frame_rows(order_metrics(order_rows), ORDER_METRIC_COLUMNS))


def window_sales(events: pd.DataFrame) -> SalesRows:
    """:func:`sales_rows` of the transactions among accepted ``events`` (no I/O)."""
    transactions = of_topic(events, "transactions")
    return sales_rows(orders(transactions), transaction_lines(transactions))


def write_sales(conn: psycopg.Connection, rows: SalesRows) -> int:
    """Add a batch's figures into the three tables; return the rows written."""
    add_sales(conn, "public.sales_metrics", rows.minute)
    add_sales(conn, "public.sales_metrics_hourly", rows.hourly)
    add_orders(conn, rows.orders)
    return len(rows.minute) + len(rows.hourly) + len(rows.orders)


def add_sales(conn: psycopg.Connection, table: str, rows: Sequence[dict]) -> None:
    """Add a batch's sums into ``table`` (sales_metrics or sales_metrics_hourly)."""
    if not rows:
        return
    copy_temp(conn, "tmp_sales",
              "window_start timestamptz, window_end timestamptz, category text, country text, "
              "total_amount numeric(14,2), transaction_count bigint, units_sold bigint",
              SALES_COLUMNS, rows)
    conn.execute(f"""
        INSERT INTO {table} AS m (window_start, window_end, category, country, total_amount,
                                  transaction_count, avg_transaction_value, units_sold, updated_at)
        SELECT window_start, window_end, category, country, total_amount, transaction_count,
               round(total_amount / transaction_count, 2), units_sold, now()
        FROM tmp_sales ORDER BY window_start, category, country
        ON CONFLICT (window_start, category, country) DO UPDATE SET
            total_amount = m.total_amount + EXCLUDED.total_amount,
            transaction_count = m.transaction_count + EXCLUDED.transaction_count,
            units_sold = m.units_sold + EXCLUDED.units_sold,
            avg_transaction_value = round((m.total_amount + EXCLUDED.total_amount)
                                          / (m.transaction_count + EXCLUDED.transaction_count), 2),
            updated_at = now()""")
    conn.execute("DROP TABLE tmp_sales")


def add_orders(conn: psycopg.Connection, rows: Sequence[dict]) -> None:
    """Add a batch's order figures into ``order_metrics``."""
    if not rows:
        return
    copy_temp(conn, "tmp_orders",
              "window_start timestamptz, window_end timestamptz, country text, order_count bigint,"
              " revenue numeric(14,2), billed_amount numeric(14,2), units_sold bigint,"
              " min_order_value numeric(14,2), max_order_value numeric(14,2)",
              ORDER_METRIC_COLUMNS, rows)
    conn.execute("""
        INSERT INTO public.order_metrics AS m (window_start, window_end, country, order_count,
                                               revenue, billed_amount, units_sold,
                                               min_order_value, max_order_value, updated_at)
        SELECT window_start, window_end, country, order_count, revenue, billed_amount,
               units_sold, min_order_value, max_order_value, now()
        FROM tmp_orders ORDER BY window_start, country
        ON CONFLICT (window_start, country) DO UPDATE SET
            order_count = m.order_count + EXCLUDED.order_count,
            revenue = m.revenue + EXCLUDED.revenue,
            billed_amount = m.billed_amount + EXCLUDED.billed_amount,
            units_sold = m.units_sold + EXCLUDED.units_sold,
            min_order_value = least(m.min_order_value, EXCLUDED.min_order_value),
            max_order_value = greatest(m.max_order_value, EXCLUDED.max_order_value),
            updated_at = now()""")
