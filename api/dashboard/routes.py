"""Routes of the web dashboard. The page never holds a key: the link ``/dashboard?key=…`` (or
the page's key form) exchanges it once for a short-lived HttpOnly session cookie and the browser
is redirected to ``/dashboard``, so the key leaves the address bar, the history and the Referer
headers; the page then reads the public API with the cookie."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from api.deps import SettingsDep
from api.security import SESSION_COOKIE, KeyChecker

router = APIRouter(prefix="/dashboard", include_in_schema=False)

_STATIC = Path(str(resources.files("api.dashboard") / "static"))
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css",
           "geo/world_110m.json": "application/json"}
_CACHE = {"Cache-Control": "public, max-age=3600"}


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class KeyExchange(BaseModel):
    """An API key to exchange for a session."""

    key: str = Field(max_length=256)


def _set_session(response: Response, request: Request, token: str, minutes: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=minutes * 60, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


@router.get("", response_class=HTMLResponse)
async def read_dashboard_page(request: Request, settings: SettingsDep,
                              key: str | None = None) -> Response:
    """The dashboard page; with ``?key=``, the key is exchanged for a session cookie and the
    browser redirected to the page without it (``#key-refused`` when the key is not valid)."""
    if key is None:
        return HTMLResponse((_STATIC / "index.html").read_text(),
                            headers={"Cache-Control": "no-store"})
    checker: KeyChecker = request.app.state.key_checker
    token = await checker.open_session(key, settings.session_minutes)
    response = RedirectResponse("/dashboard" if token else "/dashboard#key-refused",
                                status_code=status.HTTP_303_SEE_OTHER)
    if token:
        _set_session(response, request, token, settings.session_minutes)
    return response


@router.post("/session", status_code=status.HTTP_204_NO_CONTENT)
async def open_session(exchange: KeyExchange, request: Request,
                       settings: SettingsDep) -> Response:
    """Exchange the key typed into the page for a session cookie (403 when not valid)."""
    checker: KeyChecker = request.app.state.key_checker
    token = await checker.open_session(exchange.key, settings.session_minutes)
    if token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or revoked API key")
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _set_session(response, request, token, settings.session_minutes)
    return response


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def close_session(request: Request) -> Response:
    """End the page's session and clear its cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        checker: KeyChecker = request.app.state.key_checker
        await checker.close_session(token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/plotly.min.js")
async def read_plotly() -> FileResponse:
    """plotly.js as shipped inside the installed plotly Python package (no CDN)."""
    return FileResponse(_plotly_js(), media_type="text/javascript", headers=_CACHE)


@router.get("/static/{name:path}")
async def read_asset(name: str) -> FileResponse:
    """The page's own script, style sheet and map data."""
    if name not in _ASSETS:
        raise HTTPException(404, "no such asset")
    return FileResponse(_STATIC / name, media_type=_ASSETS[name], headers=_CACHE)
