"""Routes of the web dashboard. The page holds no key: it asks for one (or takes ``?key=``
once) and keeps it in the browser's localStorage, then reads the public API with it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(prefix="/dashboard", include_in_schema=False)

_STATIC = Path(str(resources.files("api.dashboard") / "static"))
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css",
           "geo/world_110m.json": "application/json"}
_CACHE = {"Cache-Control": "public, max-age=3600"}


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("", response_class=HTMLResponse)
async def read_dashboard_page() -> HTMLResponse:
    """The dashboard page."""
    return HTMLResponse((_STATIC / "index.html").read_text())


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
