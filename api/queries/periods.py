"""Time boundaries of the named periods (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.schemas import Period


def period_start(period: Period, now: datetime | None = None) -> datetime:
    """Start of a period: today = midnight UTC, week = 7 days ago, month = 30 days ago."""
    now = now or datetime.now(UTC)
    if period == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now - timedelta(days=7 if period == "week" else 30)


def today_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of the current day."""
    return period_start("today", now)
