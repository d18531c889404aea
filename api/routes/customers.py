"""Customer segments from the RFM mart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import marts
from api.routes.params import Limit, Offset
from api.schemas import PAGE_HEADERS, CustomerSegment, Segment, SegmentDistribution

MART = "marts.customer_rfm_analysis"

router = APIRouter(prefix="/customers", tags=["customers"])


@router.get("/segments", response_model=list[CustomerSegment], summary="RFM customer segments",
            responses={200: {"headers": PAGE_HEADERS}})
async def read_customer_segments(
    responder: ResponderDep,
    segment: Annotated[Segment | None, Query(description="Only this RFM segment.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Customers of the latest RFM snapshot with their scores, highest monetary value first,
    as a JSON list; the total and the next page are in the `X-Total-Count` and `Link` headers.

    Segments: Champions, Loyal Customers, Potential Loyalists, New Customers, At Risk,
    Cannot Lose Them, Hibernating, Lost.

    Example: `GET /api/v1/customers/segments?segment=Champions&limit=20`
    """
    return await responder.respond(
        lambda conn: marts.segments(conn, segment=segment, limit=limit, offset=offset),
        {"segment": segment, "limit": limit, "offset": offset}, mart=MART)


@router.get("/segments/distribution", response_model=SegmentDistribution,
            summary="Customers per segment")
async def read_segment_distribution(responder: ResponderDep) -> Response:
    """Count, average and total value of the customers in each segment.

    Example: `GET /api/v1/customers/segments/distribution`
    """
    return await responder.respond(marts.segment_distribution, {}, mart=MART)
