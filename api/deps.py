"""Dependencies of the routes, as ``Annotated`` aliases so handlers stay short."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from api.cache import ResponseCache, cache_key
from api.config import ApiSettings
from api.materializations import Materializations
from api.queries import Conn
from api.security import KeyChecker

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="A key from `globalmart apikey create NAME`.",
)

Build = Callable[[Conn], Awaitable[BaseModel]]


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with."""
    return request.app.state.settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_materializations(request: Request) -> Materializations:
    """Last Dagster materialization of each mart."""
    return request.app.state.materializations


MaterializationsDep = Annotated[Materializations, Depends(get_materializations)]


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Reject requests without a valid key: 401 when missing, 403 when wrong or revoked."""
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)",
                            headers={"WWW-Authenticate": "APIKey"})
    checker: KeyChecker = request.app.state.key_checker
    if not await checker.is_valid(key):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or revoked API key")


class Responder:
    """Answers a read request from the cache, or builds it from PostgreSQL and caches it."""

    def __init__(self, request: Request) -> None:
        self._request = request
        state = request.app.state
        self._cache: ResponseCache = state.cache
        self._pool: AsyncConnectionPool[Conn] = state.pool
        self._settings: ApiSettings = state.settings
        self._materializations: Materializations = state.materializations

    async def respond(self, build: Build, *, mart: str | None = None) -> Response:
        """The JSON answer of ``build``; cached under the full query for a short TTL.

        ``mart`` names the mart table the answer comes from: its ``data_as_of`` is then the
        mart's last Dagster materialization when that is known."""
        key = cache_key(self._cache.prefix, self._request.url.path,
                        self._request.query_params.multi_items())
        body = await self._cache.get(key)
        if body is not None:
            return Response(body, media_type="application/json", headers={"X-Cache": "hit"})
        async with self._pool.connection() as conn:
            model = await build(conn)
        if mart and (materialized := await self._materializations.last(mart)):
            model = model.model_copy(update={"data_as_of": materialized})
        body = model.model_dump_json().encode()
        ttl = self._settings.mart_cache_ttl_seconds if mart else self._settings.cache_ttl_seconds
        await self._cache.set(key, body, ttl)
        return Response(body, media_type="application/json", headers={"X-Cache": "miss"})


ResponderDep = Annotated[Responder, Depends(Responder)]
