"""Stock: a batch's units sold, restocked and adjusted per product
(:func:`streaming.transforms.inventory.stock_changes`) added to running counters
(``stream_state.inventory_counters``); ``inventory_status`` is derived from them and the
initial stock in ``source.products``, with an alert for each product whose status got
worse."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import psycopg

from globalmart.alerts import make_alert
from globalmart.contracts import Alert
from streaming.sinks.store import copy_temp, frame_rows
from streaming.transforms.inventory import MOVEMENT_COLUMNS, stock_changes

log = logging.getLogger(__name__)


def stock_rows(lines: pd.DataFrame, inventory_events: pd.DataFrame) -> list[dict[str, Any]]:
    """The stock movements of a batch's transaction lines and inventory events, one row per
    product (no I/O)."""
    return frame_rows(stock_changes(lines, inventory_events), MOVEMENT_COLUMNS)


def apply_stock_movements(conn: psycopg.Connection, rows: Sequence[dict], query_name: str,
                          batch_id: int) -> list[Alert]:
    """Add movements to the per-product counters, refresh ``inventory_status`` of the products
    concerned (and of products that reached ``source.products`` since), and return an alert
    for each product whose status got worse into low, critical or out."""
    if not rows:
        return []
    copy_temp(conn, "tmp_moves",
              "product_id text, units_sold bigint, units_restocked bigint, units_adjusted bigint",
              MOVEMENT_COLUMNS, rows)
    conn.execute("""
        INSERT INTO stream_state.inventory_counters AS c
            (product_id, units_sold, units_restocked, units_adjusted)
        SELECT product_id, units_sold, units_restocked, units_adjusted
        FROM tmp_moves ORDER BY product_id
        ON CONFLICT (product_id) DO UPDATE SET
            units_sold = c.units_sold + EXCLUDED.units_sold,
            units_restocked = c.units_restocked + EXCLUDED.units_restocked,
            units_adjusted = c.units_adjusted + EXCLUDED.units_adjusted""")
    unknown = conn.execute("""
        SELECT count(*) FROM tmp_moves t
        WHERE NOT EXISTS (SELECT 1 FROM source.products p WHERE p.product_id = t.product_id)
        """).fetchone()[0]  # type: ignore[index]
    if unknown:
        log.warning("%s batch %d: %d products are not in source.products yet; their movements "
                    "are kept and their stock appears once they are", query_name, batch_id,
                    unknown)
    worse = conn.execute("""
        WITH touched AS (
            SELECT product_id FROM tmp_moves
            UNION
            SELECT c.product_id FROM stream_state.inventory_counters c
            WHERE NOT EXISTS (SELECT 1 FROM public.inventory_status s
                              WHERE s.product_id = c.product_id)),
        fresh AS (
            SELECT c.product_id, p.product_name, p.category, p.initial_stock, c.units_sold,
                   c.units_restocked, c.units_adjusted,
                   p.initial_stock - c.units_sold + c.units_restocked + c.units_adjusted
                       AS current_stock
            FROM touched t
            JOIN stream_state.inventory_counters c USING (product_id)
            JOIN source.products p USING (product_id)),
        graded AS (
            SELECT f.*, stream_state.stock_status(f.current_stock) AS status,
                   coalesce(s.status, stream_state.stock_status(f.initial_stock)) AS old_status
            FROM fresh f LEFT JOIN public.inventory_status s USING (product_id)),
        written AS (
            INSERT INTO public.inventory_status AS s
                (product_id, product_name, category, initial_stock, units_sold, units_restocked,
                 units_adjusted, current_stock, status, updated_at)
            SELECT product_id, product_name, category, initial_stock, units_sold,
                   units_restocked, units_adjusted, current_stock, status, now()
            FROM graded ORDER BY product_id
            ON CONFLICT (product_id) DO UPDATE SET
                product_name = EXCLUDED.product_name, category = EXCLUDED.category,
                initial_stock = EXCLUDED.initial_stock, units_sold = EXCLUDED.units_sold,
                units_restocked = EXCLUDED.units_restocked,
                units_adjusted = EXCLUDED.units_adjusted,
                current_stock = EXCLUDED.current_stock, status = EXCLUDED.status,
                updated_at = now()
            RETURNING product_id)
        SELECT product_id, product_name, current_stock, old_status, status FROM graded
        WHERE stream_state.status_rank(status) > stream_state.status_rank(old_status)
        ORDER BY product_id""").fetchall()
    return [
        make_alert(f"stock_{status}", "warning" if status == "low" else "critical", product_id,
                   f"{name} ({product_id}): stock {stock} is {status} (was {old})",
                   f"stock:{query_name}:{batch_id}:{product_id}:{status}")
        for product_id, name, stock, old, status in worse
    ]
