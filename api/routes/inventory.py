"""Stock levels from the real-time inventory table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import operations
from api.routes.params import Category, Limit, Offset
from api.schemas import InventoryStatus, LowStock, StockStatus

router = APIRouter(prefix="/inventory", tags=["inventory"])


@router.get("/status", response_model=InventoryStatus, summary="Stock per product")
async def read_inventory_status(
    responder: ResponderDep,
    category: Category = None,
    status: Annotated[StockStatus | None, Query(description="ok, low, critical or out.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Current stock (initial − sold + restocked ± adjusted) per product, emptiest first, and
    the number of products per status.

    Example: `GET /api/v1/inventory/status?status=critical&limit=50`
    """
    return await responder.respond(lambda conn: operations.inventory(
        conn, category=category, status=status, limit=limit, offset=offset),
        {"category": category, "status": status, "limit": limit, "offset": offset})


@router.get("/low-stock", response_model=LowStock, summary="Low-stock products")
async def read_low_stock(responder: ResponderDep, category: Category = None,
                         limit: Limit = 100) -> Response:
    """Products low (≤ 10), critical (≤ 5) or out of stock, emptiest first.

    Example: `GET /api/v1/inventory/low-stock?limit=20`
    """
    return await responder.respond(
        lambda conn: operations.low_stock(conn, category=category, limit=limit),
        {"category": category, "limit": limit})
