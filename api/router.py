"""The ``/api/v1`` router: includes one router per resource, all behind the API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import require_api_key
from api.routes import alerts, customers, inventory, monitoring, products, sales, sessions, trends
from api.schemas import ANSWER_HEADERS, ErrorMessage

api_router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_api_key)],
    responses={
        200: {"headers": ANSWER_HEADERS},
        401: {"model": ErrorMessage, "description": "No X-API-Key header."},
        403: {"model": ErrorMessage, "description": "Unknown or revoked API key."},
        503: {"model": ErrorMessage, "description": "PostgreSQL is unavailable."},
    },
)
for module in (sales, customers, products, trends, monitoring, inventory, sessions, alerts):
    api_router.include_router(module.router)
