"""Monitoring: anomalies, executive figures and pipeline health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import MaterializationsDep, ResponderDep, SettingsDep
from api.queries import monitoring
from api.routes.params import Hours, Limit, Offset
from api.schemas import PAGE_HEADERS, DashboardMetrics, PipelineHealth, TransactionAnomaly

router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get("/anomalies", response_model=list[TransactionAnomaly], summary="Recent anomalies",
            responses={200: {"headers": PAGE_HEADERS}})
async def read_anomalies(responder: ResponderDep, hours: Hours = 24, limit: Limit = 100,
                         offset: Offset = 0) -> Response:
    """Transactions flagged as high value, unusual quantity, rapid fire or total mismatch,
    newest first, as a JSON list; the total and the next page are in the `X-Total-Count` and
    `Link` headers.

    Example: `GET /api/v1/monitoring/anomalies?hours=6&limit=20`
    """
    return await responder.respond(lambda conn: monitoring.anomalies(conn, hours, limit, offset),
                                   {"hours": hours, "limit": limit, "offset": offset})


@router.get("/dashboard", response_model=DashboardMetrics, summary="Executive figures")
async def read_dashboard(responder: ResponderDep, settings: SettingsDep) -> Response:
    """Revenue, orders, average order value, active users, top category and country,
    anomalies and alerts of the current UTC day.

    Example: `GET /api/v1/monitoring/dashboard`
    """
    minutes = settings.active_user_minutes
    return await responder.respond(lambda conn: monitoring.dashboard(conn, minutes), {})


@router.get("/pipeline", response_model=PipelineHealth, summary="Pipeline health")
async def read_pipeline(
    responder: ResponderDep,
    materializations: MaterializationsDep,
    window_minutes: Annotated[int, Query(ge=1, le=1440,
                                         description="Window of rates and batches.")] = 5,
) -> Response:
    """Ingestion rate and lag per topic, batch durations per streaming query, and the
    freshness of every real-time table and mart.

    Example: `GET /api/v1/monitoring/pipeline?window_minutes=15`
    """
    return await responder.respond(
        lambda conn: monitoring.pipeline(conn, window_minutes, materializations),
        {"window_minutes": window_minutes})
