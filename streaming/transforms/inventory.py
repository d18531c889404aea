"""Stock movements per product: units sold (from transactions), restocks and adjustments
(from inventory events). Current stock and its status are derived in PostgreSQL, where the
initial stock (``source.products``) and the running totals live."""

from __future__ import annotations

import numpy as np
import pandas as pd

MOVEMENT_COLUMNS = ["product_id", "units_sold", "units_restocked", "units_adjusted"]


def units_sold(lines: pd.DataFrame) -> pd.DataFrame:
    """Units sold per product from :func:`streaming.transforms.sales.transaction_lines`
    (movement columns, restocks and adjustments 0)."""
    sold = lines.groupby("product_id", sort=True)["quantity"].sum()
    return pd.DataFrame({"product_id": sold.index, "units_sold": sold.to_numpy(dtype="int64"),
                         "units_restocked": 0, "units_adjusted": 0}, columns=MOVEMENT_COLUMNS)


def stock_movements(inventory_events: pd.DataFrame) -> pd.DataFrame:
    """Restocked and adjusted units per product in the valid ``inventory_events`` (movement
    columns, units sold 0)."""
    kind = inventory_events["kind"].to_numpy()
    delta = inventory_events["quantity_delta"].to_numpy(dtype="int64")
    moves = pd.DataFrame({"product_id": inventory_events["product_id"].to_numpy(),
                          "units_restocked": np.where(kind == "restock", delta, 0),
                          "units_adjusted": np.where(kind == "adjustment", delta, 0)})
    grouped = moves.groupby("product_id", sort=True).sum().reset_index()
    grouped["units_sold"] = 0
    return grouped[MOVEMENT_COLUMNS].astype({"units_restocked": "int64",
                                             "units_adjusted": "int64"})


def stock_changes(lines: pd.DataFrame, inventory_events: pd.DataFrame) -> pd.DataFrame:
    """All stock movements of a batch, one row per product: :func:`units_sold` of the
    transaction lines plus :func:`stock_movements` of the inventory events."""
    parts = [frame for frame in (units_sold(lines), stock_movements(inventory_events))
             if not frame.empty]
    if not parts:
        return pd.DataFrame(columns=MOVEMENT_COLUMNS)
    return (pd.concat(parts).groupby("product_id", sort=True).sum().reset_index()
            [MOVEMENT_COLUMNS])
