"""Sales trends from the trends mart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import marts
from api.schemas import SalesTrends, TrendType

MART = "marts.sales_trends"

router = APIRouter(prefix="/trends", tags=["trends"])


@router.get("/sales", response_model=SalesTrends, summary="Sales trends")
async def read_sales_trends(
    responder: ResponderDep,
    trend_type: Annotated[TrendType, Query(description="daily, weekly or monthly.")] = "daily",
    limit: Annotated[int, Query(ge=1, le=365, description="Periods (1-365).")] = 30,
) -> Response:
    """Revenue, orders, average order value, moving average and growth per period, newest
    first.

    Example: `GET /api/v1/trends/sales?trend_type=weekly&limit=12`
    """
    return await responder.respond(lambda conn: marts.trends(conn, trend_type, limit),
                                   {"trend_type": trend_type, "limit": limit}, mart=MART)
