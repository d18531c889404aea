"""Sales from the real-time tables: windows, period summaries, geography, categories."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import sales
from api.routes.params import Category, Limit, Offset, PeriodParam, check_date, unprocessable
from api.schemas import (
    PAGE_HEADERS,
    SalesByCategory,
    SalesByCountry,
    SalesMetric,
    SalesSummary,
    SalesTimeline,
)
from globalmart.contracts import Country

router = APIRouter(prefix="/sales", tags=["sales"])


@router.get("/metrics", response_model=list[SalesMetric], summary="Sales metric windows",
            responses={200: {"headers": PAGE_HEADERS}})
async def read_sales_metrics(
    responder: ResponderDep,
    start_date: Annotated[date | None, Query(description="First UTC day (YYYY-MM-DD).",
                                             examples=["2026-11-01"])] = None,
    end_date: Annotated[date | None, Query(description="Last UTC day, inclusive (YYYY-MM-DD).",
                                           examples=["2026-11-30"])] = None,
    category: Category = None,
    country: Annotated[Country | None, Query(description="One of the five markets.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """One-minute tumbling windows of revenue per category and country, newest first, as a
    JSON list; the total and the next page are in the `X-Total-Count` and `Link` headers.

    Days are whole UTC days, both ends included.

    Example:
    `GET /api/v1/sales/metrics?start_date=2026-11-01&end_date=2026-11-30&country=USA&limit=50`
    """
    check_date("start_date", start_date)
    check_date("end_date", end_date)
    if start_date and end_date and start_date > end_date:
        raise unprocessable("end_date", "end_date must not be before start_date")
    return await responder.respond(lambda conn: sales.metrics(
        conn, start_date=start_date, end_date=end_date, category=category, country=country,
        limit=limit, offset=offset), {"start_date": start_date, "end_date": end_date,
                                      "category": category, "country": country,
                                      "limit": limit, "offset": offset})


@router.get("/summary", response_model=SalesSummary, summary="Sales totals of a period")
async def read_sales_summary(responder: ResponderDep, period: PeriodParam = "today") -> Response:
    """Orders, revenue, average order value and units since the start of the period.

    Example: `GET /api/v1/sales/summary?period=week`
    """
    return await responder.respond(lambda conn: sales.summary(conn, period), {"period": period})


@router.get("/by-country", response_model=SalesByCountry, summary="Sales per country")
async def read_sales_by_country(responder: ResponderDep,
                                period: PeriodParam = "today") -> Response:
    """Revenue, orders and units per country with ISO codes and coordinates for maps.

    Example: `GET /api/v1/sales/by-country?period=today`
    """
    return await responder.respond(lambda conn: sales.by_country(conn, period),
                                   {"period": period})


@router.get("/by-category", response_model=SalesByCategory, summary="Sales per category")
async def read_sales_by_category(responder: ResponderDep,
                                 period: PeriodParam = "today") -> Response:
    """Revenue of each category's own lines, transactions and units, with its share.

    Example: `GET /api/v1/sales/by-category?period=month`
    """
    return await responder.respond(lambda conn: sales.by_category(conn, period),
                                   {"period": period})


@router.get("/timeline", response_model=SalesTimeline, summary="Revenue per minute")
async def read_sales_timeline(
    responder: ResponderDep,
    minutes: Annotated[int, Query(ge=5, le=1440, description="Minutes to look back.")] = 60,
) -> Response:
    """Order-level revenue and orders per minute, oldest first (the live chart).

    Example: `GET /api/v1/sales/timeline?minutes=60`
    """
    return await responder.respond(lambda conn: sales.timeline(conn, minutes),
                                   {"minutes": minutes})
