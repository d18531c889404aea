"""Sessions: the events of a ``session_id`` split wherever the user was inactive for more
than 30 minutes, and the cart-abandonment facts of each session."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pandas as pd

from streaming.transforms.sales import cents, money

SESSION_GAP = timedelta(minutes=30)
ABANDONMENT_MINUTES = 15
SESSION_TOPICS = ("product_views", "cart_events", "transactions")
ACTIVITY_COLUMNS = ["event_id", "event_time", "user_id", "session_id", "kind", "revenue_cents"]
SESSION_COLUMNS = ["session_id", "user_id", "session_start", "session_end", "duration_seconds",
                   "page_views", "cart_adds", "cart_removes", "purchases", "revenue",
                   "converted", "last_cart_add_at", "purchased_after_last_add", "purchase_times"]
_COUNTS = {"view": "page_views", "add": "cart_adds", "remove": "cart_removes",
           "purchase": "purchases"}


def _kind(topic: str, event) -> str:
    if topic == "product_views":
        return "view"
    if topic == "cart_events":
        return event.action
    return "purchase"


def session_activity(events: pd.DataFrame) -> pd.DataFrame:
    """Valid product views, cart events and transactions (rows of
    :func:`streaming.transforms.parse.validate`) as one activity stream: event_id, event_time,
    user_id, session_id, kind (view, add, remove, update, purchase) and revenue_cents (Σ lines
    of a purchase, else 0)."""
    chosen = events[events["topic"].isin(SESSION_TOPICS) & events["reason"].isna()]
    rows = [(e.user_id, e.session_id, _kind(topic, e),
             sum(i.quantity * cents(i.unit_price) for i in e.items) if topic == "transactions"
             else 0)
            for topic, e in zip(chosen["topic"], chosen["event"], strict=True)]
    frame = pd.DataFrame(rows, columns=["user_id", "session_id", "kind", "revenue_cents"],
                         index=chosen.index)
    frame.insert(0, "event_id", chosen["event_id"])
    frame.insert(1, "event_time", chosen["event_time"])
    return frame.astype({"revenue_cents": "int64"})[ACTIVITY_COLUMNS]


def session_metrics(activity: pd.DataFrame, gap: timedelta = SESSION_GAP) -> pd.DataFrame:
    """One row per session (``session_id`` split where the next event comes ``gap`` or more
    after the previous one, as Spark's session windows do) with the ``session_metrics``
    columns. ``purchased_after_last_add`` tells whether a purchase came within 15 minutes
    after the last cart add (the abandonment test); ``purchase_times`` lets
    :func:`merge_sessions` join pieces of a session seen in different micro-batches."""
    if activity.empty:
        return pd.DataFrame(columns=SESSION_COLUMNS)
    a = activity.sort_values(["session_id", "user_id", "event_time"], kind="stable")
    a = a.reset_index(drop=True)
    breaks = ((a["session_id"] != a["session_id"].shift())
              | (a["user_id"] != a["user_id"].shift())
              | (a["event_time"] - a["event_time"].shift() >= pd.Timedelta(gap)))
    a["piece"] = breaks.cumsum()
    for kind, column in _COUNTS.items():
        a[column] = (a["kind"] == kind).astype("int64")
    a["add_time"] = a["event_time"].where(a["kind"] == "add")
    grouped = a.groupby("piece", sort=True).agg(
        session_id=("session_id", "first"), user_id=("user_id", "first"),
        session_start=("event_time", "min"), session_end=("event_time", "max"),
        page_views=("page_views", "sum"), cart_adds=("cart_adds", "sum"),
        cart_removes=("cart_removes", "sum"), purchases=("purchases", "sum"),
        revenue=("revenue_cents", "sum"), last_cart_add_at=("add_time", "max"))
    purchases = a.loc[a["kind"] == "purchase", ["piece", "event_time"]]
    times = purchases.groupby("piece")["event_time"].agg(list).to_dict()
    grouped["purchase_times"] = [times.get(p, []) for p in grouped.index]
    last_add = purchases["piece"].map(grouped["last_cart_add_at"])
    deadline = last_add + pd.Timedelta(minutes=ABANDONMENT_MINUTES)
    after = (purchases["event_time"] >= last_add) & (purchases["event_time"] <= deadline)
    grouped["purchased_after_last_add"] = after.groupby(purchases["piece"]).any().reindex(
        grouped.index, fill_value=False).astype(bool)
    grouped["duration_seconds"] = (
        grouped["session_end"] - grouped["session_start"]).dt.total_seconds()
    grouped["converted"] = grouped["purchases"] > 0
    grouped["revenue"] = [money(c) for c in grouped["revenue"]]
    return grouped.reset_index(drop=True)[SESSION_COLUMNS]


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


def merge_sessions(stored: list[dict], pieces: list[dict], gap: timedelta = SESSION_GAP
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
    pieces_per_id = Counter(row["session_id"] for row in pieces)
    upserts: list[dict] = []
    for row in pieces:
        if pieces_per_id[row["session_id"]] == 1 and row["session_id"] not in groups:
            upserts.append(_finish(row))  # a new session seen once: nothing to merge
        else:
            groups[row["session_id"]].append({**row, "changed": True})
    stored_keys = {(r["session_id"], r["session_start"]) for r in stored}
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
