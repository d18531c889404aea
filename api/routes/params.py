"""Query parameters shared by several routes, with their limits and examples."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import HTTPException, Query, status

from api.schemas import Period

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (1-1000).")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip (pagination).")]
Hours = Annotated[int, Query(ge=1, le=168, description="Look back this many hours (1-168).")]
Category = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
          description="Product category, exact name (no control characters).",
          openapi_examples={"electronics": {"summary": "Electronics", "value": "Electronics"}}),
]
PeriodParam = Annotated[
    Period,
    Query(description="today (since midnight UTC), week (last 7 days) or month (last 30 days)."),
]


def unprocessable(field: str, message: str) -> HTTPException:
    """A 422 in the same shape as FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def check_date(field: str, value: date | None) -> None:
    """Refuse dates outside 2000-01-01 .. 2100-12-31."""
    if value is not None and not EARLIEST <= value <= LATEST:
        raise unprocessable(field, f"{field} must be between {EARLIEST} and {LATEST}")
