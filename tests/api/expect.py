"""Expected answers computed straight from the simulated source events (not from the tables
the API reads)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from . import dataset as ds  # noqa: TID252


def today_start() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def since(period: str) -> datetime:
    now = datetime.now(UTC)
    return {"today": today_start(), "week": now - timedelta(days=7),
            "month": now - timedelta(days=30)}[period]


def txns_since(data: ds.Dataset, start: datetime) -> list[ds.Txn]:
    """Transactions whose one-minute window starts at or after ``start``."""
    return [t for t in data.transactions if ds.minute(t.event_time) >= start]


def revenue_by_country(data: ds.Dataset, start: datetime) -> dict[str, tuple[Decimal, int, int]]:
    out: dict[str, list] = defaultdict(lambda: [Decimal("0"), 0, 0])
    for txn in txns_since(data, start):
        cell = out[txn.country]
        cell[0] += txn.revenue
        cell[1] += 1
        cell[2] += txn.units
    return {k: tuple(v) for k, v in out.items()}


def revenue_by_category(data: ds.Dataset, start: datetime) -> dict[str, tuple[Decimal, int, int]]:
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    windows: dict[str, set] = defaultdict(set)  # (window, country, transaction) per category
    units: dict[str, int] = defaultdict(int)
    for txn in txns_since(data, start):
        for line in txn.lines:
            revenue[line.category] += line.amount
            windows[line.category].add((ds.minute(txn.event_time), txn.country,
                                        txn.transaction_id))
            units[line.category] += line.quantity
    return {c: (revenue[c], len(windows[c]), units[c]) for c in revenue}


def active_users(data: ds.Dataset, minutes: int) -> int:
    cutoff = datetime.now(UTC) - timedelta(minutes=minutes)
    return len({s.user_id for s in data.sessions if s.end >= cutoff})


def latest(rows: list[tuple]) -> list[tuple]:
    newest = max(row[0] for row in rows)
    return [row for row in rows if row[0] == newest]
