"""The raw Parquet layer, written by the streaming app: external assets, in the graph so lineage,
observations and partition status are visible; the complete-days sensor reports them. Group and
owners: ``defs.yaml`` of this folder."""

from __future__ import annotations

import dagster as dg

from globalmart_dagster.constants import RAW_PREFIX, RAW_TOPICS
from globalmart_dagster.partitions import daily_partitions

_RAW_DESCRIPTIONS = {
    "transactions": "completed purchases with their line items",
    "product_views": "product page views with viewing time and device",
    "cart_events": "cart adds, removes and quantity updates",
    "inventory_events": "restocks and stock adjustments",
}


def raw_asset_key(topic: str) -> dg.AssetKey:
    """Key of the raw-layer asset of a topic: ``raw/<topic>``."""
    return dg.AssetKey([RAW_PREFIX, topic])


def _raw_spec(topic: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=raw_asset_key(topic),
        description=(
            f"Raw layer of the `{topic}` topic ({_RAW_DESCRIPTIONS.get(topic, 'events')}): "
            f"every valid event as Parquet under `<lake>/raw/{topic}/event_date=YYYY-MM-DD/`, "
            "written by the streaming app and partitioned by the UTC date of `event_time`. "
            "The complete-days sensor records end offsets, lag and throughput as observations."
        ),
        partitions_def=daily_partitions,
        kinds={"parquet", "kafka"},
        metadata={"topic": topic, "path": f"<lake>/raw/{topic}"},
    )


RAW_ASSETS = [_raw_spec(topic) for topic in RAW_TOPICS]
