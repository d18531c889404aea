"""Sessions: the events of a ``session_id`` split wherever the user was inactive for more
than 30 minutes, and the cart-abandonment facts of each session."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DecimalType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.transforms.sales import AMOUNT, lines_total

SESSION_GAP = "30 minutes"
ABANDONMENT_MINUTES = 15
SESSION_TOPICS = ("product_views", "cart_events", "transactions")

# The fields the three session topics' canonical JSON share or that sessions need.
ACTIVITY_SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("event_time", TimestampType()),
    StructField("user_id", StringType()),
    StructField("session_id", StringType()),
    StructField("action", StringType()),
    StructField("items", ArrayType(StructType([
        StructField("quantity", IntegerType()),
        StructField("unit_price", DecimalType(12, 2)),
    ]))),
])

SESSION_COLUMNS = ["session_id", "user_id", "session_start", "session_end", "duration_seconds",
                   "page_views", "cart_adds", "cart_removes", "purchases", "revenue",
                   "converted", "last_cart_add_at", "purchased_after_last_add", "purchase_times"]


def session_activity(validated: DataFrame) -> DataFrame:
    """Valid product views, cart events and transactions (from
    :func:`streaming.transforms.parse.validate`) as one activity stream: event_id, event_time,
    user_id, session_id, kind (view, add, remove, update, purchase) and revenue (Σ lines of a
    purchase, else 0)."""
    parsed = validated.where(F.col("reason").isNull() & F.col("topic").isin(*SESSION_TOPICS)) \
        .select("topic", F.from_json("text", ACTIVITY_SCHEMA).alias("e"))
    kind = (F.when(F.col("topic") == "product_views", F.lit("view"))
            .when(F.col("topic") == "cart_events", F.col("e.action"))
            .otherwise(F.lit("purchase")))
    revenue = F.when(F.col("topic") == "transactions", lines_total(F.col("e.items"))) \
        .otherwise(F.lit(0).cast(AMOUNT))
    return parsed.select(
        F.col("e.event_id").alias("event_id"), F.col("e.event_time").alias("event_time"),
        F.col("e.user_id").alias("user_id"), F.col("e.session_id").alias("session_id"),
        kind.alias("kind"), revenue.alias("revenue"),
    )


def session_metrics(activity: DataFrame, gap: str = SESSION_GAP) -> DataFrame:
    """One row per session (``session_id`` split by inactivity longer than ``gap``) with the
    ``session_metrics`` columns. ``purchased_after_last_add`` tells whether a purchase came
    within 15 minutes after the last cart add (the abandonment test); ``purchase_times`` lets
    :func:`merge_sessions` join pieces of a session seen in different micro-batches."""
    def count(kind: str):
        return F.sum(F.when(F.col("kind") == kind, 1).otherwise(0)).cast("int")

    aggregated = activity.groupBy(
        "session_id", "user_id", F.session_window("event_time", gap).alias("w"),
    ).agg(
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        count("view").alias("page_views"),
        count("add").alias("cart_adds"),
        count("remove").alias("cart_removes"),
        count("purchase").alias("purchases"),
        F.sum("revenue").cast(AMOUNT).alias("revenue"),
        F.max(F.when(F.col("kind") == "add", F.col("event_time"))).alias("last_cart_add_at"),
        F.collect_list(F.when(F.col("kind") == "purchase", F.col("event_time")))
        .alias("purchase_times"),
    )
    deadline = F.col("last_cart_add_at") + F.expr(f"INTERVAL {ABANDONMENT_MINUTES} MINUTES")
    return aggregated.select(
        "session_id", "user_id", "session_start", "session_end",
        ((F.unix_micros("session_end") - F.unix_micros("session_start")) / 1_000_000)
        .alias("duration_seconds"),
        "page_views", "cart_adds", "cart_removes", "purchases", "revenue",
        (F.col("purchases") > 0).alias("converted"),
        "last_cart_add_at",
        F.coalesce(F.exists("purchase_times",
                            lambda t: (t >= F.col("last_cart_add_at")) & (t <= deadline)),
                   F.lit(False)).alias("purchased_after_last_add"),
        F.array_sort(F.filter("purchase_times", lambda t: t.isNotNull())).alias("purchase_times"),
    )


def _combine(a: dict, b: dict) -> dict:
    adds = [t for t in (a["last_cart_add_at"], b["last_cart_add_at"]) if t is not None]
    return {
        "session_id": a["session_id"], "user_id": a["user_id"],
        "session_start": min(a["session_start"], b["session_start"]),
        "session_end": max(a["session_end"], b["session_end"]),
        "page_views": a["page_views"] + b["page_views"],
        "cart_adds": a["cart_adds"] + b["cart_adds"],
        "cart_removes": a["cart_removes"] + b["cart_removes"],
        "purchases": a["purchases"] + b["purchases"],
        "revenue": a["revenue"] + b["revenue"],
        "last_cart_add_at": max(adds) if adds else None,
        "purchase_times": sorted([*a["purchase_times"], *b["purchase_times"]]),
        "changed": a["changed"] or b["changed"],
    }


def _finish(row: dict) -> dict:
    last_add = row["last_cart_add_at"]
    deadline = last_add + timedelta(minutes=ABANDONMENT_MINUTES) if last_add else None
    return {
        **row,
        "duration_seconds": (row["session_end"] - row["session_start"]).total_seconds(),
        "converted": row["purchases"] > 0,
        "purchased_after_last_add": bool(
            last_add and any(last_add <= t <= deadline for t in row["purchase_times"])),
    }


def merge_sessions(stored: list[dict], pieces: list[dict], gap: timedelta = timedelta(minutes=30)
                   ) -> tuple[list[dict], list[tuple[str, datetime]]]:
    """Merge the session rows of one micro-batch (``pieces``, as :func:`session_metrics` makes
    them) into the rows already stored for the same session ids, the way Spark's session
    windows merge: two pieces of a session_id belong together when the later one starts less
    than ``gap`` after the earlier one ends.

    Returns the rows to upsert (those that changed, with every ``SESSION_COLUMNS`` value) and
    the (session_id, session_start) keys of stored rows that were merged into another row.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in stored:
        groups[row["session_id"]].append({**row, "changed": False})
    for row in pieces:
        groups[row["session_id"]].append({**row, "changed": True})
    stored_keys = {(r["session_id"], r["session_start"]) for r in stored}
    upserts: list[dict] = []
    kept: set[tuple[str, datetime]] = set()
    for rows in groups.values():
        rows.sort(key=lambda r: r["session_start"])
        merged = [rows[0]]
        for row in rows[1:]:
            if row["session_start"] < merged[-1]["session_end"] + gap:
                merged[-1] = _combine(merged[-1], row)
            else:
                merged.append(row)
        for row in merged:
            key = (row["session_id"], row["session_start"])
            kept.add(key)
            if row["changed"] or key not in stored_keys:
                upserts.append(_finish(row))
    return upserts, sorted(stored_keys - kept)
