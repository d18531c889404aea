"""The web dashboard rendered by headless Chromium against a live API with data: every chart
must have drawn (plotly SVG present), the KPIs filled, the alerts listed, and no key in the
page itself; on an empty platform each chart says what it waits for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from globalmart.keys import create_key

from .conftest import LiveServer, make_settings  # noqa: TID252

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ["chart-live", "chart-map", "chart-categories", "chart-segments", "chart-products"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=20000"]


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("GLOBALMART_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def _run(chromium: str, profile: Path, *args: str) -> str:
    result = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _element(dom: str, element_id: str) -> str:
    """The markup from the element with this id to the next card."""
    start = dom.index(f'id="{element_id}"')
    end = dom.find("</article>", start)
    return dom[start:end]


def test_page_and_assets_are_served_without_a_key(live_server):
    page = httpx.get(f"{live_server.url}/dashboard")
    assert page.status_code == 200
    assert "gm_" not in page.text.replace("gm_…", "")  # only the placeholder
    plotly = httpx.get(f"{live_server.url}/dashboard/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.text.lstrip().startswith("/**")
    assert httpx.get(f"{live_server.url}/dashboard/static/geo/world_110m.json").status_code == 200
    assert httpx.get(f"{live_server.url}/dashboard/static/../config.py").status_code == 404


def test_dashboard_draws_every_chart(chromium, live_server, api_key, tmp_path):
    url = f"{live_server.url}/dashboard?key={api_key}"
    dom = _run(chromium, tmp_path / "profile", "--dump-dom", url)
    assert 'data-loaded="1"' in dom, dom[:3000]
    for chart in CHARTS:
        markup = _element(dom, chart)
        assert 'data-drawn="1"' in markup, chart
        assert "main-svg" in markup, chart
    assert "choroplethlocation" in _element(dom, "chart-map")  # countries were shaded
    for kpi in ("kpi-revenue", "kpi-orders", "kpi-aov", "kpi-active", "kpi-anomalies"):
        value = re.search(rf'id="{kpi}">([^<]*)<', dom).group(1)
        assert value not in ("", "–") and any(ch.isdigit() for ch in value), kpi
    alerts = _element(dom, "alerts")
    assert 'data-drawn="1"' in alerts and alerts.count("<tr>") >= 2
    assert api_key not in dom  # the key left the address bar and is not in the page

    screenshot = tmp_path / "dashboard.png"
    _run(chromium, tmp_path / "profile2", f"--screenshot={screenshot}",
         "--window-size=1440,1500", url)
    assert screenshot.stat().st_size > 50_000
    target = os.environ.get("GLOBALMART_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(screenshot, target)


def test_dashboard_without_key_asks_for_one(chromium, live_server, tmp_path):
    dom = _run(chromium, tmp_path / "profile", "--dump-dom", f"{live_server.url}/dashboard")
    assert 'data-loaded="0"' in dom
    assert re.search(r'<form id="key-form"(?![^>]*hidden)', dom)
    assert "Enter an API key" in dom


def test_an_empty_platform_says_what_each_chart_waits_for(chromium, make_database, redis_url,
                                                         cache_prefix, tmp_path):
    """On a first start nothing has landed yet: no chart draws bare axes; each says what it
    waits for."""
    url = make_database()
    key = create_key(url, "empty")
    with LiveServer(make_settings(url, redis_url, cache_prefix)) as server:
        dom = _run(chromium, tmp_path / "profile", "--dump-dom",
                   f"{server.url}/dashboard?key={key}")
    assert 'data-loaded="1"' in dom, dom[:3000]
    for chart in CHARTS:
        markup = _element(dom, chart)
        assert 'data-empty="1"' in markup and "waiting" in markup, chart
        assert "main-svg" not in markup, chart
    assert "Dagster builds it" in _element(dom, "chart-segments")
