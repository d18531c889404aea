"""Sessions: the events of a ``session_id`` split wherever the user was inactive for more
than 30 minutes, and the cart-abandonment facts of each session."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from streaming.transforms.sales import line_totals, money

SESSION_GAP = timedelta(minutes=30)
ABANDONMENT_MINUTES = 15
SESSION_TOPICS = ("product_views", "cart_events", "transactions")
ACTIVITY_COLUMNS = ["event_id", "event_time", "user_id", "session_id", "kind", "revenue_cents"]
SESSION_COLUMNS = ["session_id", "user_id", "session_start", "session_end", "duration_seconds",
                   "page_views", "cart_adds", "cart_removes", "purchases", "revenue",
                   "converted", "last_cart_add_at", "purchased_after_last_add", "purchase_times"]
_COUNTS = {"view": "page_views", "add": "cart_adds", "remove": "cart_removes",
           "purchase": "purchases"}


def session_activity(events: pd.DataFrame) -> pd.DataFrame:
    """Valid product views, cart events and transactions (rows of
    :func:`streaming.transforms.parse.validate`) as one activity stream: event_id, event_time,
    user_id, session_id, kind (view, add, remove, update, purchase) and revenue_cents (Σ lines
    of a purchase, else 0)."""
    chosen = events[events["topic"].isin(SESSION_TOPICS) & events["reason"].isna()]
    topic = chosen["topic"].to_numpy()
    purchase = topic == "transactions"
    revenue = np.zeros(len(chosen), dtype="int64")
    revenue[purchase] = line_totals(chosen[purchase])
    return pd.DataFrame({
        "event_id": chosen["event_id"], "event_time": chosen["event_time"],
        "user_id": chosen["user_id"].to_numpy(), "session_id": chosen["session_id"].to_numpy(),
        "kind": np.where(topic == "product_views", "view",
                         np.where(topic == "cart_events", chosen["action"].to_numpy(),
                                  "purchase")).astype(object),
        "revenue_cents": revenue}, index=chosen.index, columns=ACTIVITY_COLUMNS)


def _timestamps(values: pd.Series) -> pd.Series:
    """Datetimes (or None) as UTC timestamps (NaT), index kept."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    return pd.to_datetime(values.astype(object), utc=True)


def _merged(rows: pd.DataFrame, gap: timedelta) -> pd.DataFrame:
    """Session pieces (times, counts, ``revenue_cents``, ``last_cart_add_at`` and
    ``purchase_times`` lists) merged the way Spark's session windows merge: pieces of a
    session_id belong together when one starts less than ``gap`` after the end of the pieces
    before it. One row per merged session with every ``SESSION_COLUMNS`` value."""
    rows = rows.sort_values(["session_id", "session_start"], kind="stable").reset_index(drop=True)
    same = rows["session_id"].eq(rows["session_id"].shift())
    reach = rows.groupby("session_id", sort=False)["session_end"].cummax().shift()
    rows["piece"] = (~same | (rows["session_start"] >= reach + pd.Timedelta(gap))).cumsum()
    merged = rows.groupby("piece", sort=True).agg(
        session_id=("session_id", "first"), user_id=("user_id", "first"),
        session_start=("session_start", "min"), session_end=("session_end", "max"),
        page_views=("page_views", "sum"), cart_adds=("cart_adds", "sum"),
        cart_removes=("cart_removes", "sum"), purchases=("purchases", "sum"),
        revenue=("revenue_cents", "sum"), last_cart_add_at=("last_cart_add_at", "max"))
    times = rows[["piece", "purchase_times"]].explode("purchase_times").dropna()
    times["purchase_times"] = _timestamps(times["purchase_times"])
    times = times.sort_values(["piece", "purchase_times"], kind="stable")
    lists: dict[int, list] = {}
    for piece, moment in zip(times["piece"], times["purchase_times"], strict=True):
        lists.setdefault(piece, []).append(moment)
    merged["purchase_times"] = [lists.get(p, []) for p in merged.index]
    last_add = times["piece"].map(merged["last_cart_add_at"])
    after = ((times["purchase_times"] >= last_add)
             & (times["purchase_times"] <= last_add + pd.Timedelta(minutes=ABANDONMENT_MINUTES)))
    merged["purchased_after_last_add"] = after.groupby(times["piece"]).any().reindex(
        merged.index, fill_value=False).astype(bool)
    merged["duration_seconds"] = (
        merged["session_end"] - merged["session_start"]).dt.total_seconds()
    merged["converted"] = merged["purchases"] > 0
    merged["revenue"] = [money(c) for c in merged["revenue"]]
    return merged.reset_index(drop=True)[SESSION_COLUMNS]


def _single_purchases(kind: pd.Series, time: pd.Series) -> list[list]:
    """Per event: [its time] for a purchase, else []."""
    lists: list[list] = [[] for _ in range(len(kind))]
    purchase = (kind == "purchase").to_numpy()
    for position, moment in zip(purchase.nonzero()[0], time[purchase], strict=True):
        lists[position] = [moment]
    return lists


def session_metrics(activity: pd.DataFrame, gap: timedelta = SESSION_GAP) -> pd.DataFrame:
    """One row per session (``session_id`` split where the next event comes ``gap`` or more
    after the previous one, as Spark's session windows do) with the ``session_metrics``
    columns. ``purchased_after_last_add`` tells whether a purchase came within 15 minutes
    after the last cart add (the abandonment test); ``purchase_times`` lets
    :func:`streaming.sinks.sessions.merge_staged_sessions` join pieces of a session seen in
    different micro-batches."""
    if activity.empty:
        return pd.DataFrame(columns=SESSION_COLUMNS)
    kind, time = activity["kind"], activity["event_time"]
    pieces = pd.DataFrame({
        "session_id": activity["session_id"], "user_id": activity["user_id"],
        "session_start": time, "session_end": time,
        **{column: (kind == name).astype("int64") for name, column in _COUNTS.items()},
        "revenue_cents": activity["revenue_cents"],
        "last_cart_add_at": time.where(kind == "add"),
        "purchase_times": _single_purchases(kind, time)})
    return _merged(pieces, gap)
