"""Transaction anomalies: the rule anomalies of a batch's transactions
(:func:`streaming.transforms.anomalies.rule_anomalies`) and rapid fire, decided in PostgreSQL
against ``stream_state.recent_transactions`` (the transactions of earlier batches count too),
into ``transaction_anomalies`` (one row per transaction and type), and a critical alert for
each new one that scores high enough."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

from globalmart.alerts import make_alert
from globalmart.contracts import Alert
from globalmart.vocabulary import RAPID_FIRE_COUNT, RAPID_FIRE_WINDOW_SECONDS
from streaming.sinks.store import copy_temp, frame_rows
from streaming.transforms.anomalies import (
    ANOMALY_COLUMNS,
    USER_TX_COLUMNS,
    rule_anomalies,
    user_transactions,
)


@dataclass(frozen=True)
class AnomalyRows:
    """A batch's rule anomalies and its transactions as the rapid-fire rule needs them, as
    rows."""

    rules: list[dict[str, Any]]
    users: list[dict[str, Any]]


def anomaly_rows(order_rows: pd.DataFrame) -> AnomalyRows:
    """The rows of a batch's :func:`~streaming.transforms.sales.orders` (no I/O)."""
    return AnomalyRows(rules=frame_rows(rule_anomalies(order_rows), ANOMALY_COLUMNS),
                       users=frame_rows(user_transactions(order_rows), USER_TX_COLUMNS))


def write_anomalies(conn: psycopg.Connection, rows: AnomalyRows, forget: datetime,
                    min_score: float) -> list[Alert]:
    """Insert the rule anomalies, then record the transactions and flag rapid fire, forgetting
    the recorded transactions no event at or after ``forget`` (no later event of the query is
    older) can count with. Returns an alert for each new anomaly scoring ``min_score`` or
    more."""
    found = insert_rule_anomalies(conn, rows.rules)
    prune_before = forget - timedelta(seconds=RAPID_FIRE_WINDOW_SECONDS)
    found += detect_rapid_fire(conn, rows.users, prune_before)
    return anomaly_alerts(found, min_score)


_ANOMALY_RETURNING = "RETURNING transaction_id, user_id, anomaly_type, anomaly_score, description"


def insert_rule_anomalies(conn: psycopg.Connection, rows: Sequence[dict]) -> list[tuple]:
    """Insert rule anomalies; return the ones that are new."""
    if not rows:
        return []
    copy_temp(conn, "tmp_anomalies",
              "transaction_id text, user_id text, amount numeric(14,2), anomaly_score float8, "
              "anomaly_type text, description text, event_time timestamptz",
              ANOMALY_COLUMNS, rows)
    return conn.execute(f"""
        INSERT INTO public.transaction_anomalies (transaction_id, user_id, amount, anomaly_score,
                                                  anomaly_type, detected_at, description,
                                                  event_time)
        SELECT transaction_id, user_id, amount, anomaly_score, anomaly_type, now(), description,
               event_time FROM tmp_anomalies
        ON CONFLICT (transaction_id, anomaly_type) DO NOTHING
        {_ANOMALY_RETURNING}""").fetchall()


def detect_rapid_fire(conn: psycopg.Connection, rows: Sequence[dict],
                      prune_before: datetime | None) -> list[tuple]:
    """Record the batch's transactions per user and flag every transaction that is at least
    the 5th of its user within (t − 60 s, t], counting earlier batches too; a late transaction
    can make a later one rapid fire. Returns the new anomalies."""
    if not rows:
        return []
    copy_temp(conn, "tmp_user_tx",
              "user_id text, transaction_id text, event_time timestamptz, amount numeric(14,2)",
              USER_TX_COLUMNS, rows)
    conn.execute("""
        INSERT INTO stream_state.recent_transactions (user_id, transaction_id, event_time, amount)
        SELECT user_id, transaction_id, event_time, amount FROM tmp_user_tx
        ON CONFLICT DO NOTHING""")
    params = {"window": RAPID_FIRE_WINDOW_SECONDS, "count": RAPID_FIRE_COUNT}
    found = conn.execute(f"""
        WITH affected AS (
            SELECT user_id, min(event_time) AS lo,
                   max(event_time) + make_interval(secs => %(window)s) AS hi
            FROM tmp_user_tx GROUP BY user_id),
        candidates AS (
            SELECT r.user_id, r.transaction_id, r.event_time, r.amount
            FROM stream_state.recent_transactions r JOIN affected a USING (user_id)
            WHERE r.event_time >= a.lo AND r.event_time < a.hi),
        counted AS (
            SELECT c.*, (SELECT count(*) FROM stream_state.recent_transactions o
                         WHERE o.user_id = c.user_id
                           AND o.event_time > c.event_time - make_interval(secs => %(window)s)
                           AND o.event_time <= c.event_time) AS n
            FROM candidates c)
        INSERT INTO public.transaction_anomalies (transaction_id, user_id, amount, anomaly_score,
                                                  anomaly_type, detected_at, description,
                                                  event_time)
        SELECT transaction_id, user_id, amount,
               least(1.0, 0.5 + 0.5 * (n - %(count)s) / %(count)s::float8), 'rapid_fire', now(),
               n || ' transactions by this user within ' || %(window)s || ' s', event_time
        FROM counted WHERE n >= %(count)s
        ON CONFLICT (transaction_id, anomaly_type) DO NOTHING
        {_ANOMALY_RETURNING}""", params).fetchall()
    if prune_before is not None:
        conn.execute("DELETE FROM stream_state.recent_transactions WHERE event_time < %s",
                     (prune_before,))
    return found


def anomaly_alerts(found: Iterable[tuple], min_score: float) -> list[Alert]:
    """A critical alert for each new anomaly scoring at least ``min_score``."""
    return [
        make_alert(f"anomaly_{kind}", "critical", transaction_id,
                   f"transaction {transaction_id} of user {user_id}: {description} "
                   f"(score {score:.2f})", f"anomaly:{transaction_id}:{kind}")
        for transaction_id, user_id, kind, score, description in found
        if score >= min_score
    ]
