"""Monitoring: anomalies, executive figures and pipeline health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import MaterializationsDep, ResponderDep, SettingsDep
from api.queries import monitoring
from api.routes.params import Hours, Limit
from api.schemas import AnomaliesPage, DashboardMetrics, PipelineHealth

router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get("/anomalies", response_model=AnomaliesPage, summary="Recent anomalies")
async def read_anomalies(responder: ResponderDep, hours: Hours = 24,
                         limit: Limit = 100) -> Response:
    """Transactions flagged as high value, unusual quantity, rapid fire or total mismatch.

    Example: `GET /api/v1/monitoring/anomalies?hours=6&limit=20`
    """
    return await responder.respond(lambda conn: monitoring.anomalies(conn, hours, limit))


@router.get("/dashboard", response_model=DashboardMetrics, summary="Executive figures")
async def read_dashboard(responder: ResponderDep, settings: SettingsDep) -> Response:
    """Revenue, orders, average order value, active users, top category and country,
    anomalies and alerts of the current UTC day.

    Example: `GET /api/v1/monitoring/dashboard`
    """
    minutes = settings.active_user_minutes
    return await responder.respond(lambda conn: monitoring.dashboard(conn, minutes))


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
        lambda conn: monitoring.pipeline(conn, window_minutes, materializations))
