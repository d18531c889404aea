"""Product performance from the products mart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import marts
from api.routes.params import Category, Limit, Offset
from api.schemas import PAGE_HEADERS, ProductPerformance, ProductSort, TopPerformers

MART = "marts.product_performance"

router = APIRouter(prefix="/products", tags=["products"])


@router.get("/performance", response_model=list[ProductPerformance],
            summary="Product performance", responses={200: {"headers": PAGE_HEADERS}})
async def read_product_performance(
    responder: ResponderDep,
    category: Category = None,
    sort_by: Annotated[ProductSort, Query(description="Sort field (descending).")] = (
        "total_revenue"),
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Units, revenue, average price, score and rank in category of each product, as a JSON
    list; the total and the next page are in the `X-Total-Count` and `Link` headers.

    Example: `GET /api/v1/products/performance?category=Electronics&sort_by=units_sold&limit=10`
    """
    return await responder.respond(
        lambda conn: marts.products(conn, category=category, sort_by=sort_by, limit=limit,
                                    offset=offset),
        {"category": category, "sort_by": sort_by, "limit": limit, "offset": offset}, mart=MART)


@router.get("/top-performers", response_model=TopPerformers, summary="Top products by revenue")
async def read_top_performers(
    responder: ResponderDep,
    top_n: Annotated[int, Query(ge=1, le=100, description="How many products (1-100).")] = 10,
) -> Response:
    """The products with the most revenue in the latest snapshot.

    Example: `GET /api/v1/products/top-performers?top_n=5`
    """
    return await responder.respond(lambda conn: marts.top_performers(conn, top_n),
                                   {"top_n": top_n}, mart=MART)
