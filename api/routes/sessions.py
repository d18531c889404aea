"""Browsing sessions and abandoned carts."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ResponderDep, SettingsDep
from api.queries import operations
from api.routes.params import Hours, Limit
from api.schemas import CartAbandonment, SessionSummary

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.get("", response_model=SessionSummary, summary="Session summary")
async def read_sessions(responder: ResponderDep, settings: SettingsDep,
                        hours: Hours = 24) -> Response:
    """Sessions, users, active users, duration, page views, conversion and revenue.

    Example: `GET /api/v1/sessions?hours=24`
    """
    minutes = settings.active_user_minutes
    return await responder.respond(
        lambda conn: operations.sessions(conn, hours=hours, active_minutes=minutes),
        {"hours": hours})


@router.get("/cart-abandonment", response_model=CartAbandonment, summary="Abandoned carts")
async def read_cart_abandonment(responder: ResponderDep, hours: Hours = 24,
                                limit: Limit = 100) -> Response:
    """Carts with items added and no purchase within 15 minutes, and the abandonment rate.

    Example: `GET /api/v1/sessions/cart-abandonment?hours=24&limit=20`
    """
    return await responder.respond(
        lambda conn: operations.cart_abandonment(conn, hours=hours, limit=limit),
        {"hours": hours, "limit": limit})
