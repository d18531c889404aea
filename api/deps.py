"""Dependencies of the routes, as ``Annotated`` aliases so handlers stay short."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.responses import Response
from fastapi.security import APIKeyCookie, APIKeyHeader
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, SerializeAsAny, TypeAdapter

from api.cache import ResponseCache, cache_key, query_string
from api.config import ApiSettings
from api.materializations import Materializations
from api.queries import Conn
from api.schemas import DATA_AS_OF, TOTAL_COUNT, Fresh, ListPage, Page
from api.security import SESSION_COOKIE, KeyChecker

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="A key from `globalmart apikey create NAME`.",
)
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False,
    description="The web dashboard's session, for which it exchanged a key on first load.",
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
    request: Request, key: Annotated[str | None, Security(_api_key_header)],
    session: Annotated[str | None, Security(_session_cookie)],
) -> None:
    """Reject requests without a valid key (or dashboard session): 401 when missing, 403 when
    wrong, revoked or expired."""
    checker: KeyChecker = request.app.state.key_checker
    if key:
        if not await checker.is_valid(key):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or revoked API key")
    elif session:
        if not await checker.is_open(session):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "session expired or key revoked")
    else:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)",
                            headers={"WWW-Authenticate": "APIKey"})


class Responder:
    """Answers a read request from the cache, or builds it from PostgreSQL and caches it.

    Freshness and paging travel in headers (``X-Data-As-Of``, ``X-Total-Count``, ``Link`` with
    ``rel="next"``), so a list endpoint answers a plain JSON list as the guide does. The cache
    keeps the headers with the body: one line of JSON, then the body."""

    def __init__(self, request: Request) -> None:
        self._request = request
        state = request.app.state
        self._cache: ResponseCache = state.cache
        self._pool: AsyncConnectionPool[Conn] = state.pool
        self._settings: ApiSettings = state.settings
        self._materializations: Materializations = state.materializations

    async def respond(self, build: Build, params: Mapping[str, object], *,
                      mart: str | None = None) -> Response:
        """The JSON answer of ``build``, cached under the route's validated ``params`` for a
        short TTL.

        ``mart`` names the mart table the answer comes from: its ``data_as_of`` is then the
        mart's last Dagster materialization when that is known."""
        path = self._request.url.path
        key = cache_key(self._cache.prefix, path, params)
        cached = await self._cache.get(key)
        self._request.app.state.metrics.cache.labels("miss" if cached is None else "hit").inc()
        if cached is not None:
            head, _, body = cached.partition(b"\n")
            return Response(body, media_type="application/json",
                            headers={**json.loads(head), "X-Cache": "hit"})
        async with self._pool.connection() as conn:
            model = await build(conn)
        if mart and (materialized := await self._materializations.last(mart)):
            model = model.model_copy(update={"data_as_of": materialized})
        headers = answer_headers(model, path, params)
        body = (ITEMS.dump_json(list(model.items)) if isinstance(model, ListPage)
                else model.model_dump_json().encode())
        ttl = self._settings.mart_cache_ttl_seconds if mart else self._settings.cache_ttl_seconds
        await self._cache.set(key, json.dumps(headers).encode() + b"\n" + body, ttl)
        return Response(body, media_type="application/json",
                        headers={**headers, "X-Cache": "miss"})


ITEMS: TypeAdapter[list[BaseModel]] = TypeAdapter(list[SerializeAsAny[BaseModel]])


def answer_headers(model: BaseModel, path: str, params: Mapping[str, object]) -> dict[str, str]:
    """``X-Data-As-Of`` of a :class:`Fresh` answer; ``X-Total-Count`` and, when rows remain,
    a ``Link`` to the next page (RFC 8288) of a :class:`Page` (no I/O)."""
    headers: dict[str, str] = {}
    if isinstance(model, Fresh) and model.data_as_of is not None:
        headers[DATA_AS_OF] = model.data_as_of.isoformat()
    if isinstance(model, Page):
        headers[TOTAL_COUNT] = str(model.total)
        following = model.offset + model.limit
        if following < model.total:
            query = query_string({**params, "offset": following})
            headers["Link"] = f'<{path}?{query}>; rel="next"'
    return headers


ResponderDep = Annotated[Responder, Depends(Responder)]
