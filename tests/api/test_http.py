"""HTTP hygiene: HEAD wherever GET is answered, the usual security headers, and cache keys
made of validated parameters only."""

from __future__ import annotations

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app


def test_head_is_answered_wherever_get_is(settings, api_key):
    app = create_app(settings)
    with TestClient(app, headers={"X-API-Key": api_key}) as client:
        documented = client.get("/openapi.json").json()["paths"]
        paths = [p for p, item in documented.items() if "get" in item] + [
            "/dashboard", "/dashboard/static/dashboard.js", "/openapi.json", "/docs"]
        assert len(paths) >= 20
        for path in paths:
            get, head = client.get(path), client.head(path)
            assert head.status_code == get.status_code, path
            assert head.content == b"", path
            for name in ("content-type", "x-data-as-of", "x-total-count"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)
    with TestClient(app) as client:
        assert client.head("/api/v1/sales/summary").status_code == 401


def test_security_headers(live_server, api_key):
    api = httpx.get(f"{live_server.url}/api/v1/sales/summary", headers={"X-API-Key": api_key})
    page = httpx.get(f"{live_server.url}/dashboard")
    for response in (api, page, httpx.get(f"{live_server.url}/health")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers  # plain HTTP here
    assert api.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert httpx.get(f"{live_server.url}/docs").status_code == 200  # its CDN scripts still load


@pytest.mark.parametrize("noise", [{"utm_source": "x"}, {"limit": "0010"}, {"cachebuster": "1"}])
def test_unknown_or_unnormalised_parameters_make_no_new_cache_key(client, redis_url, cache_prefix,
                                                                   noise):
    stored = redis.Redis.from_url(redis_url)
    try:
        first = client.get("/api/v1/sales/metrics", params={"limit": 10})
        keys = set(stored.scan_iter(match=cache_prefix + "*"))
        again = client.get("/api/v1/sales/metrics", params={"limit": 10, **noise})
        assert again.headers["x-cache"] == "hit" and again.content == first.content
        assert set(stored.scan_iter(match=cache_prefix + "*")) == keys
    finally:
        stored.close()
