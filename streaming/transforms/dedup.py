"""De-duplication of events by (topic, event_id) within the event-time watermark.

The watermark of a micro-batch is the highest event time of the earlier batches minus the
allowed lateness (as in Spark). Events older than it are too late and dropped; among the rest,
the first copy of each (topic, event_id) is kept. Copies seen in earlier batches are known from
``stream_state.seen_events`` (:func:`streaming.sinks.state.claim_events`), which forgets them in
bulk once they are all behind the watermark.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

KEY = ["topic", "event_id"]


def on_time(events: pd.DataFrame, watermark: datetime | None) -> pd.DataFrame:
    """The events at or after ``watermark`` (all of them when there is none yet)."""
    if watermark is None:
        return events
    return events[events["event_time"] >= pd.Timestamp(watermark)]


def within(events: pd.DataFrame, bound: datetime | None) -> pd.DataFrame:
    """The late ``events`` no older than ``bound`` (the watermark minus the late window): those
    still admitted into their past windows (none when there is no bound)."""
    if bound is None:
        return events.iloc[0:0]
    return events[events["event_time"] >= pd.Timestamp(bound)]


def first_copies(events: pd.DataFrame) -> pd.DataFrame:
    """The first copy (in arrival order) of each (topic, event_id) of a batch."""
    return events.drop_duplicates(KEY, keep="first")


def conflicting_copies(events: pd.DataFrame) -> dict[int, str]:
    """The copies of an event id in a batch whose bytes differ from its first copy's (by
    ``digest``), with the reason they are rejected; same bytes again are a plain resend."""
    first = events.drop_duplicates(KEY, keep="first").set_index(KEY)["digest"]
    copies = events[events.duplicated(KEY, keep="first")]
    if copies.empty:
        return {}
    original = first.reindex(pd.MultiIndex.from_frame(copies[KEY])).to_numpy()
    differ = copies[[a != b for a, b in zip(copies["digest"], original, strict=True)]]
    return {int(i): conflict_reason(e) for i, e in zip(differ.index, differ["event_id"],
                                                        strict=True)}


def conflict_reason(event_id: str) -> str:
    """Why a conflicting duplicate is rejected."""
    return (f"conflicting duplicate: event_id {event_id} was already received with other "
            "content; the first copy counts")
