"""Builds the FastAPI application: settings, connection pool, cache, routers, dashboard.

``uvicorn --factory api.main:create_app`` (what ``globalmart api`` runs) builds it from the
environment; tests pass their own :class:`ApiSettings`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import __version__
from api.cache import ResponseCache
from api.config import ApiSettings
from api.dashboard.routes import router as dashboard_router
from api.health import Readiness
from api.materializations import Materializations
from api.metrics import ApiMetrics, RequestMetrics
from api.middleware import HttpHygiene
from api.queries import Conn
from api.queries.freshness import MARTS
from api.router import api_router
from api.routes import health
from api.security import KeyChecker

log = logging.getLogger(__name__)

DESCRIPTION = """
Real-time and batch analytics of the GlobalMart platform.

* **Sales**: one-minute windows by category and country, period summaries, geography.
* **Customers**: RFM segments of the latest snapshot and their distribution.
* **Products**: performance and top performers.
* **Monitoring**: anomalies, executive figures, pipeline health (ingestion, lag, freshness).
* **Operations**: inventory, sessions, abandoned carts, alerts.

Every answer read from a table says how fresh it is in the `X-Data-As-Of` header (and in
`data_as_of` where the answer is an object). The list endpoints answer a JSON list, as the
guide does; the total is in `X-Total-Count` and the next page in `Link` (`rel="next"`).
Every GET also answers HEAD.

**Authentication**: send a key from `globalmart apikey create NAME` in the `X-API-Key` header
(missing → 401, unknown or revoked → 403). `/health`, `/ready` and `/dashboard` need no key;
the dashboard exchanges a key once for a short-lived session cookie.
"""


async def _configure(conn: Conn) -> None:
    await conn.set_autocommit(True)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The application, wired to the services named by ``settings`` (default: environment)."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            settings.database_url, connection_class=Conn,
            min_size=settings.db_pool_min, max_size=settings.db_pool_max,
            timeout=settings.db_timeout_seconds, open=False, configure=_configure,
            kwargs={"row_factory": dict_row, "connect_timeout": 5,
                    "options": f"-c statement_timeout={settings.statement_timeout_ms}"},
        )
        await pool.open(wait=False)  # a database that is down now must not stop liveness
        cache = ResponseCache(settings.redis_url, settings.cache_prefix,
                              settings.redis_timeout_seconds, settings.redis_retry_seconds,
                              settings.local_cache_seconds)
        app.state.settings = settings
        app.state.pool = pool
        app.state.cache = cache
        app.state.key_checker = KeyChecker(pool, settings.key_cache_seconds)
        app.state.readiness = Readiness(pool, cache, settings.bootstrap_servers)
        app.state.materializations = Materializations(settings.dagster_database_url,
                                                      list(MARTS))
        try:
            yield
        finally:
            await cache.close()
            await pool.close()

    app = FastAPI(title="GlobalMart Analytics API", version=__version__,
                  description=DESCRIPTION, lifespan=lifespan)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(HttpHygiene)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET"], allow_headers=["X-API-Key"])

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """PostgreSQL is down or saturated: 503, the API itself is fine."""
        log.warning("database unavailable for %s: %s", request.url.path, exc)
        return JSONResponse({"detail": "database unavailable, retry later"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    app.include_router(health.router)
    app.include_router(api_router)
    app.include_router(dashboard_router)
    return app
