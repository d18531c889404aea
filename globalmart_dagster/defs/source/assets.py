"""The operational source tables, written by the generator: external assets the dimensions
read. Group and owners: ``defs.yaml`` of this folder."""

from __future__ import annotations

import dagster as dg

SOURCE_CUSTOMERS = dg.AssetSpec(
    key=dg.AssetKey(["source", "customers"]),
    description="Operational customer records (`source.customers`) written by the generator; "
                "`updated_at` marks each change.",
    kinds={"postgres"},
)
SOURCE_PRODUCTS = dg.AssetSpec(
    key=dg.AssetKey(["source", "products"]),
    description="Operational product catalog (`source.products`) written by the generator: "
                "name, category, brand, list price and initial stock.",
    kinds={"postgres"},
)
SOURCE_ASSETS = [SOURCE_CUSTOMERS, SOURCE_PRODUCTS]
