"""Alerts raised by the streaming job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import ResponderDep
from api.queries import operations
from api.routes.params import Hours, Limit
from api.schemas import Alerts, Severity

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=Alerts, summary="Recent alerts")
async def read_alerts(
    responder: ResponderDep,
    hours: Hours = 24,
    severity: Annotated[Severity | None, Query(description="info, warning or critical.")] = None,
    limit: Limit = 100,
) -> Response:
    """Alerts (critical anomalies, stock transitions) of the last hours, newest first.

    Example: `GET /api/v1/alerts?severity=critical&hours=24`
    """
    return await responder.respond(
        lambda conn: operations.alerts(conn, hours=hours, severity=severity, limit=limit),
        {"hours": hours, "severity": severity, "limit": limit})
