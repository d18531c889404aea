"""The API's ``/metrics`` scraped by a real Prometheus server: request counts and latency per
route and the cache's hits and misses equal what the test itself sent."""

from __future__ import annotations

import httpx

from tests.prometheus import Prometheus


def test_prometheus_scrapes_request_counts_latency_and_cache_lookups(live_server, api_key,
                                                                     tmp_path):
    route = "/api/v1/sales/summary"
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": api_key}) as client:
        answers = [client.get(route, params={"period": "week"}) for _ in range(5)]
        refused = httpx.get(f"{live_server.url}{route}")  # no key
    assert [a.headers["x-cache"] for a in answers] == ["miss"] + ["hit"] * 4
    assert refused.status_code == 401
    prometheus = Prometheus(tmp_path, {"api": f"127.0.0.1:{live_server.port}"})
    try:
        prometheus.wait(lambda: prometheus.value('up{job="api"}') == 1, 60, "a first scrape")
        ok = f'globalmart_api_requests_total{{route="{route}",method="GET",status="200"}}'
        assert prometheus.value(ok) == 5
        assert prometheus.value(
            f'globalmart_api_requests_total{{route="{route}",status="401"}}') == 1
        assert prometheus.value(
            f'globalmart_api_request_seconds_count{{route="{route}"}}') == 6
        assert prometheus.value('globalmart_api_cache_lookups_total{result="hit"}') == 4
        assert prometheus.value('globalmart_api_cache_lookups_total{result="miss"}') == 1
    finally:
        prometheus.stop()
