"""Liveness and readiness (no API key needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import __version__
from api.schemas import Health, Readiness

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, summary="Liveness")
async def read_health() -> Health:
    """The process is up. Needs no key and touches no dependency.

    Example: `GET /health`
    """
    return Health(status="healthy", timestamp=datetime.now(UTC), version=__version__)


@router.get("/metrics", include_in_schema=False)
async def read_metrics(request: Request) -> Response:
    """Prometheus metrics (text format): requests and latency per route, cache hits and
    misses. Needs no key, like the other service endpoints."""
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/ready", response_model=Readiness, summary="Readiness",
            responses={503: {"model": Readiness, "description": "A dependency is down."}})
async def read_ready(request: Request) -> JSONResponse:
    """Checks PostgreSQL, Redis and the Kafka broker; 503 names what is down.

    Example: `GET /ready`
    """
    checks = await request.app.state.readiness.check()
    ready = all(check.ok for check in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(mode="json"),
                        status_code=status.HTTP_200_OK if ready else
                        status.HTTP_503_SERVICE_UNAVAILABLE)
