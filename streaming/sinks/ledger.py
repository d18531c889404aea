"""The day ledger (``public.stream_day_ledger``): per event day, the transactions the stream
accepted into the real-time tables and those it left out as later than its watermark, with
their revenue (Σ quantity × unit price of the lines). The warehouse reconciles with it: a day's
revenue in ``fact_sales`` = accepted + left out, to the cent."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

from streaming.transforms.parse import of_topic
from streaming.transforms.sales import line_totals, money


def ledger_rows(accepted: pd.DataFrame, late: pd.DataFrame) -> list[dict[str, Any]]:
    """Per event date, the accepted and late transactions of a batch and their revenue (no
    I/O)."""
    parts = []
    for kind, events in (("accepted", accepted), ("late", late)):
        transactions = of_topic(events, "transactions")
        parts.append(pd.DataFrame({"event_date": transactions["event_time"].dt.date.to_numpy(),
                                   f"{kind}_transactions": 1,
                                   f"{kind}_revenue": line_totals(transactions)}))
    days = (pd.concat(parts).groupby("event_date", sort=True).sum(min_count=0)
            .fillna(0).astype("int64"))
    return [{"event_date": day, "accepted_transactions": int(row["accepted_transactions"]),
             "accepted_revenue": money(row["accepted_revenue"]),
             "late_transactions": int(row["late_transactions"]),
             "late_revenue": money(row["late_revenue"])} for day, row in days.iterrows()]


def write_ledger(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    """Add a batch's :func:`ledger_rows` to the ledger (in the batch's transaction)."""
    if rows:
        conn.cursor().executemany("""
            INSERT INTO public.stream_day_ledger AS l
                (event_date, accepted_transactions, accepted_revenue, late_transactions,
                 late_revenue)
            VALUES (%(event_date)s, %(accepted_transactions)s, %(accepted_revenue)s,
                    %(late_transactions)s, %(late_revenue)s)
            ON CONFLICT (event_date) DO UPDATE SET
                accepted_transactions = l.accepted_transactions + EXCLUDED.accepted_transactions,
                accepted_revenue = l.accepted_revenue + EXCLUDED.accepted_revenue,
                late_transactions = l.late_transactions + EXCLUDED.late_transactions,
                late_revenue = l.late_revenue + EXCLUDED.late_revenue,
                updated_at = now()""", rows)
