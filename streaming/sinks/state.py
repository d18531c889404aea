"""De-duplication and watermark state of the realtime query, changed in its batch's
transaction (so a replayed batch finds it as the first run left it).

- The watermark: the query's highest event time so far (``stream_state.query_progress``) minus
  the allowed lateness. :func:`load_watermark` locks the query's row until the batch commits;
  :func:`advance_progress` raises it.
- The ids seen (``stream_state.seen_events``), in two generations: new ids go into the current
  one, and once every id of the older one is behind the watermark it is emptied and becomes
  current (:func:`rotate_seen_generations`), so ids are forgotten in bulk, with no dead rows.

:func:`accept_batch` applies both to a validated batch (the pure rules are in
:mod:`streaming.transforms.dedup`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

import pandas as pd
import psycopg
from psycopg import sql

from streaming.sinks.store import copy_frame
from streaming.transforms.dedup import (
    conflict_reason,
    conflicting_copies,
    first_copies,
    on_time,
    within,
)
from streaming.transforms.parse import valid

log = logging.getLogger(__name__)


def load_watermark(conn: psycopg.Connection, query_name: str,
                   lateness: timedelta) -> datetime | None:
    """The query's watermark: its highest event time so far minus ``lateness`` (None before
    its first events). The row is locked until the batch commits."""
    row = conn.execute("SELECT max_event_time FROM stream_state.query_progress "
                       "WHERE query_name = %s FOR UPDATE", (query_name,)).fetchone()
    return None if row is None else row[0] - lateness


def advance_progress(conn: psycopg.Connection, query_name: str, newest: datetime,
                     decided_until: datetime | None = None) -> None:
    """Raise the query's highest event time to ``newest`` (and record how far abandonment was
    decided)."""
    conn.execute("""
        INSERT INTO stream_state.query_progress AS q (query_name, max_event_time, decided_until)
        VALUES (%s, %s, %s)
        ON CONFLICT (query_name) DO UPDATE SET
            max_event_time = greatest(q.max_event_time, EXCLUDED.max_event_time),
            decided_until = coalesce(EXCLUDED.decided_until, q.decided_until)""",
                 (query_name, newest, decided_until))


def rotate_seen_generations(conn: psycopg.Connection, watermark: datetime | None) -> int:
    """The current generation of ``stream_state.seen_events``. Once every id of the older
    generation is behind ``watermark`` (or it is empty and the current one is not), the older
    one is emptied and becomes current; the other, which no longer changes, is analysed so
    that the probes into it are planned on its real size. The rows stay locked until the batch
    commits."""
    (older, _, older_newest), (current, _, newest) = conn.execute(
        "SELECT generation, current, newest FROM stream_state.seen_generations "
        "ORDER BY current FOR UPDATE").fetchall()
    if newest is None or not (older_newest is None
                              or watermark is not None and older_newest < watermark):
        return current
    if older_newest is not None:
        conn.execute(sql.SQL("TRUNCATE {}").format(_seen_partition(older)))
    conn.execute("UPDATE stream_state.seen_generations "
                 "SET current = NOT current, newest = CASE WHEN current THEN newest END")
    conn.execute(sql.SQL("ANALYZE {}").format(_seen_partition(current)))
    return older


def _seen_partition(generation: int) -> sql.Identifier:
    return sql.Identifier("stream_state", f"seen_events_{generation}")


def claim_events(conn: psycopg.Connection, events: pd.DataFrame,
                 watermark: datetime | None) -> tuple[pd.DataFrame, dict[int, str]]:
    """The ``events`` (one copy each) whose (topic, event_id) is not in
    ``stream_state.seen_events``, which are recorded in its current generation (see
    :func:`rotate_seen_generations`), and the conflicting duplicates among the others (a known
    id with other bytes) with their reason. Every id at or after the watermark is remembered:
    a generation is emptied only once all its ids are behind it."""
    current = rotate_seen_generations(conn, watermark)
    if events.empty:
        return events, {}
    copy_frame(conn, "tmp_seen", "topic text, event_id uuid, event_time timestamptz, "
               "digest bytea", _for_copy(events))
    seen = conn.execute(sql.SQL(
        "WITH new AS (INSERT INTO stream_state.seen_events (generation, topic, event_id, "
        "event_time, digest) SELECT %(current)s, topic, event_id, event_time, digest "
        "FROM tmp_seen t WHERE NOT EXISTS (SELECT FROM {older} o "
        "WHERE o.event_id = t.event_id AND o.topic = t.topic) "
        "ORDER BY event_id ON CONFLICT DO NOTHING RETURNING topic, event_id) "
        "SELECT t.topic, t.event_id::text, bool_or(s.digest IS DISTINCT FROM t.digest "
        "AND s.digest IS NOT NULL) FROM tmp_seen t "
        "JOIN stream_state.seen_events s ON s.event_id = t.event_id AND s.topic = t.topic "
        "WHERE NOT EXISTS (SELECT FROM new n WHERE n.topic = t.topic AND n.event_id = t.event_id)"
        " GROUP BY 1, 2"
    ).format(older=_seen_partition(1 - current)), {"current": current}).fetchall()
    conn.execute("DROP TABLE tmp_seen")
    conn.execute("UPDATE stream_state.seen_generations SET newest = greatest(newest, %s) "
                 "WHERE generation = %s", (events["event_time"].max(), current))
    return _known_apart(events, seen)


def _for_copy(events: pd.DataFrame) -> pd.DataFrame:
    """The key, time and digest of ``events`` as COPY takes them (bytea as hex text)."""
    return pd.DataFrame({
        "topic": events["topic"], "event_id": events["event_id"],
        "event_time": events["event_time"],
        "digest": [None if d is None else "\\x" + d.hex() for d in events["digest"]]})


def _known_apart(events: pd.DataFrame, known: list[tuple[str, str, bool]]
                 ) -> tuple[pd.DataFrame, dict[int, str]]:
    """``events`` without those ``known`` ((topic, event_id, conflicting) rows), and the
    conflicting ones with their reason."""
    if not known:
        return events, {}
    keys = pd.MultiIndex.from_arrays([events["topic"], events["event_id"]])
    again = keys.isin(pd.MultiIndex.from_tuples([(t, i) for t, i, _ in known]))
    clash = keys.isin(pd.MultiIndex.from_tuples([(t, i) for t, i, c in known if c] or [("", "")]))
    conflicts = {int(i): conflict_reason(e) for i, e in
                 zip(events.index[clash], events["event_id"][clash], strict=True)}
    return events[~again], conflicts


def claim_late_events(conn: psycopg.Connection, late: pd.DataFrame
                      ) -> tuple[pd.DataFrame, dict[int, str]]:
    """The ``late`` events (one copy each, behind the watermark) counted for the first time:
    neither still remembered by ``stream_state.seen_events`` (a resend of an event accepted
    on time) nor claimed as late before (``stream_state.late_events``), which are recorded
    there; and the conflicting duplicates among the others. An event accepted on time whose id
    was forgotten (after one to two watermarks) and that comes again counts as a new late
    event."""
    if late.empty:
        return late, {}
    copy_frame(conn, "tmp_late", "topic text, event_id uuid, event_time timestamptz, "
               "digest bytea", _for_copy(late))
    known = conn.execute(
        "WITH known AS (SELECT t.topic, t.event_id, bool_or(k.digest IS DISTINCT FROM t.digest "
        "  AND k.digest IS NOT NULL) AS conflicting FROM tmp_late t JOIN ("
        "    SELECT topic, event_id, digest FROM stream_state.seen_events UNION ALL "
        "    SELECT topic, event_id, digest FROM stream_state.late_events) k "
        "  ON k.event_id = t.event_id AND k.topic = t.topic GROUP BY 1, 2), "
        "new AS (INSERT INTO stream_state.late_events (topic, event_id, event_date, digest) "
        "  SELECT topic, event_id, (event_time AT TIME ZONE 'UTC')::date, digest FROM tmp_late t"
        "  WHERE NOT EXISTS (SELECT FROM known k WHERE k.topic = t.topic "
        "                    AND k.event_id = t.event_id) "
        "  ORDER BY event_id ON CONFLICT DO NOTHING) "
        "SELECT topic, event_id::text, conflicting FROM known").fetchall()
    conn.execute("DROP TABLE tmp_late")
    return _known_apart(late, known)


class Accepted(NamedTuple):
    """A batch's valid events sorted: ``events`` on time and new to the query; ``admitted``
    and ``left_out``: new events behind the watermark (see :func:`claim_late_events`), within
    the late window (added into their past windows) or beyond it; one copy each. And the
    conflicting duplicates (same event id, other bytes: within the batch or against what was
    seen) with their reason, by row."""

    events: pd.DataFrame
    admitted: pd.DataFrame
    left_out: pd.DataFrame
    conflicts: dict[int, str]


def accept_batch(conn: psycopg.Connection, query_name: str, validated: pd.DataFrame,
                 lateness: timedelta, late_window: timedelta = timedelta(0)) -> Accepted:
    """Sort a validated batch (see :class:`Accepted`)."""
    watermark = load_watermark(conn, query_name, lateness)
    candidates = valid(validated)
    conflicts = conflicting_copies(candidates)
    timely = on_time(candidates, watermark)
    late, late_conflicts = claim_late_events(
        conn, first_copies(candidates.drop(timely.index)))
    admitted = within(late, None if watermark is None or not late_window
                      else watermark - late_window)
    left_out = late.drop(admitted.index)
    if len(left_out):
        log.warning("%s: %d events older than the watermark %s: counted in stock, the day "
                    "ledger and the raw layer, not in the windowed real-time tables",
                    query_name, len(left_out), watermark)
    events, seen_conflicts = claim_events(conn, first_copies(timely), watermark)
    return Accepted(events, admitted, left_out, {**conflicts, **late_conflicts, **seen_conflicts})
