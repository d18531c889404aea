"""Sessions and abandoned carts: a batch's session pieces
(:func:`streaming.transforms.sessions.session_metrics`) are staged and merged with the stored
sessions in PostgreSQL, the way Spark's session windows merge (:func:`merge_staged_sessions`
runs on a second thread while the batch's other figures are computed); then the carts whose
15 minutes ended behind the watermark are recorded as abandoned, which advances the query's
progress (:func:`decide_abandonment`)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import psycopg

from streaming.sinks.state import advance_progress
from streaming.sinks.store import copy_frame
from streaming.transforms.sessions import (
    ABANDONMENT_MINUTES,
    SESSION_GAP,
    session_activity,
    session_metrics,
)

_SESSION_PART = ("session_id, user_id, session_start, session_end, page_views, cart_adds, "
                 "cart_removes, purchases, revenue, last_cart_add_at, purchased_after_last_add, "
                 "purchase_times")
_STORED_PART = "s." + _SESSION_PART.removeprefix("session_id, ").replace(", ", ", s.")

# The stored sessions a batch's pieces can join (within the gap of a piece of their session id)
# and the pieces, numbered into islands as Spark's session windows merge them: ordered by start,
# a part opens a new island when it starts ``gap`` or more after the latest end before it.
# Only islands holding a piece are kept, with their start and latest cart add.
_SESSION_ISLANDS = f"""
    CREATE TEMP TABLE tmp_parts ON COMMIT DROP AS
    WITH bounds AS (
        SELECT session_id, min(session_start) - %(gap)s AS lo, max(session_end) + %(gap)s AS hi
        FROM tmp_pieces GROUP BY session_id),
    parts AS (
        SELECT s.session_id COLLATE "C", {_STORED_PART}, false AS fresh
        FROM public.session_metrics s JOIN bounds b USING (session_id)
        WHERE s.session_start <= b.hi AND s.session_end >= b.lo
        UNION ALL
        SELECT {_SESSION_PART}, true FROM tmp_pieces),
    reached AS (
        SELECT *, max(session_end) OVER (PARTITION BY session_id ORDER BY session_start, fresh
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
        FROM parts),
    islands AS (
        SELECT *, count(*) FILTER (WHERE reach IS NULL OR session_start >= reach + %(gap)s)
                      OVER (PARTITION BY session_id ORDER BY session_start, fresh
                            ROWS UNBOUNDED PRECEDING) AS island
        FROM reached),
    judged AS (
        SELECT *, bool_or(fresh) OVER w AS touched, max(last_cart_add_at) OVER w AS last_add,
               min(session_start) OVER w AS island_start
        FROM islands WINDOW w AS (PARTITION BY session_id, island))
    SELECT * FROM judged WHERE touched"""

# One row per island. A purchase within 15 minutes after the island's last cart add is found
# among the purchase times kept, or was found before by the part holding that add (its older
# purchase times may have been forgotten). Kept: purchase times at or after both the last add
# and ``forget`` (no later event is older), the only ones a later add or merge can still need.
_SESSION_WRITE = """
    WITH merged AS (
        SELECT session_id, island,
               (array_agg(user_id ORDER BY session_start, fresh))[1] AS user_id,
               min(session_start) AS session_start, max(session_end) AS session_end,
               sum(page_views) AS page_views, sum(cart_adds) AS cart_adds,
               sum(cart_removes) AS cart_removes, sum(purchases) AS purchases,
               sum(revenue) AS revenue, max(last_add) AS last_cart_add_at,
               coalesce(bool_or(purchased_after_last_add)
                        FILTER (WHERE last_cart_add_at = last_add), false) AS found_before
        FROM tmp_parts GROUP BY session_id, island),
    purchased AS (
        SELECT session_id, island,
               bool_or(t BETWEEN last_add AND last_add + make_interval(mins => %(minutes)s))
                   AS after_add,
               array_agg(t ORDER BY t) FILTER (WHERE t >= greatest(last_add, %(forget)s)) AS kept
        FROM tmp_parts, unnest(purchase_times) AS t GROUP BY session_id, island)
    INSERT INTO public.session_metrics (session_id, user_id, session_start, session_end,
                                        duration_seconds, page_views, cart_adds, cart_removes,
                                        purchases, revenue, converted, last_cart_add_at,
                                        purchased_after_last_add, purchase_times, updated_at)
    SELECT m.session_id, m.user_id, m.session_start, m.session_end,
           extract(epoch FROM m.session_end - m.session_start), m.page_views, m.cart_adds,
           m.cart_removes, m.purchases, m.revenue, m.purchases > 0, m.last_cart_add_at,
           m.found_before OR coalesce(p.after_add, false), coalesce(p.kept, '{}'), now()
    FROM merged m LEFT JOIN purchased p USING (session_id, island)
    ORDER BY m.session_id, m.session_start
    ON CONFLICT (session_id, session_start) DO UPDATE SET
        user_id = EXCLUDED.user_id, session_end = EXCLUDED.session_end,
        duration_seconds = EXCLUDED.duration_seconds, page_views = EXCLUDED.page_views,
        cart_adds = EXCLUDED.cart_adds, cart_removes = EXCLUDED.cart_removes,
        purchases = EXCLUDED.purchases, revenue = EXCLUDED.revenue,
        converted = EXCLUDED.converted, last_cart_add_at = EXCLUDED.last_cart_add_at,
        purchased_after_last_add = EXCLUDED.purchased_after_last_add,
        purchase_times = EXCLUDED.purchase_times, updated_at = EXCLUDED.updated_at"""


def stage_sessions(conn: psycopg.Connection, events: pd.DataFrame) -> None:
    """Stage the session pieces of a batch's accepted ``events`` (:func:`session_metrics`)
    for :func:`merge_staged_sessions`."""
    stage_session_pieces(conn, session_metrics(session_activity(events)))


def stage_session_pieces(conn: psycopg.Connection, pieces: pd.DataFrame) -> None:
    """Load a batch's session pieces (:func:`session_metrics`) into the temporary table
    ``tmp_pieces`` for :func:`merge_staged_sessions`."""
    copy_frame(conn, "tmp_pieces",
               'session_id text COLLATE "C", user_id text, session_start timestamptz,'
               " session_end timestamptz, page_views int, cart_adds int, cart_removes int,"
               " purchases int,"
               " revenue numeric(14,2), last_cart_add_at timestamptz,"
               " purchased_after_last_add boolean, purchase_times timestamptz[]",
               pieces[_SESSION_PART.split(", ")])


def merge_staged_sessions(conn: psycopg.Connection, forget: datetime) -> int:
    """Merge the staged session pieces into ``session_metrics``, in PostgreSQL, the way Spark's
    session windows merge: two parts of a session_id belong together when the later one starts
    less than the gap after the ones before it end. The stored rows merged are replaced by one
    row per merged session. Purchase times before ``forget`` (no later event of the query is
    older) are dropped when they can no longer decide the abandonment test. Returns the session
    rows written."""
    # No row locks: the batch's transaction holds its query's progress row
    # (state.load_watermark), and only the realtime query writes sessions.
    conn.execute("DROP TABLE IF EXISTS pg_temp.tmp_parts")  # an earlier part of the batch's
    conn.execute(_SESSION_ISLANDS, {"gap": SESSION_GAP})
    conn.execute("DELETE FROM public.session_metrics s USING tmp_parts p "
                 "WHERE NOT p.fresh AND p.session_start > p.island_start "
                 "AND s.session_id = p.session_id AND s.session_start = p.session_start")
    return conn.execute(_SESSION_WRITE, {"minutes": ABANDONMENT_MINUTES,
                                         "forget": forget}).rowcount


def decide_abandonment(conn: psycopg.Connection, query_name: str, newest: datetime,
                       watermark: timedelta) -> int:
    """Record abandoned carts whose 15 minutes ended behind the watermark (the highest event
    time of the previous batches minus the allowed lateness: later events are dropped, so the
    decision is final), then advance the query's progress. Returns the carts recorded."""
    previous = conn.execute(
        "SELECT max_event_time, decided_until FROM stream_state.query_progress "
        "WHERE query_name = %s", (query_name,)).fetchone()
    recorded = 0
    decided_until = None
    if previous is not None:
        decided_until = previous[0] - watermark
        recorded = conn.execute("""
            INSERT INTO public.cart_abandonment (session_id, session_start, user_id,
                                                 last_cart_event_at, items_added, detected_at)
            SELECT session_id, session_start, user_id, last_cart_add_at, cart_adds, now()
            FROM public.session_metrics
            WHERE last_cart_add_at IS NOT NULL AND NOT purchased_after_last_add
              AND last_cart_add_at + make_interval(mins => %(minutes)s) < %(until)s
              AND (%(since)s::timestamptz IS NULL
                   OR last_cart_add_at + make_interval(mins => %(minutes)s) >= %(since)s)
            ON CONFLICT (session_id, session_start) DO NOTHING""",
            {"minutes": ABANDONMENT_MINUTES, "until": decided_until,
             "since": previous[1]}).rowcount
    advance_progress(conn, query_name, newest, decided_until)
    return recorded
