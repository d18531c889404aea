"""Redis caching keyed by the full query, and answers from PostgreSQL when Redis is down."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from api.cache import cache_key
from api.main import create_app

from .conftest import make_settings  # noqa: TID252


def test_key_is_path_plus_sorted_params():
    a = cache_key("p:", "/x", {"b": 2, "a": "1", "c": None})
    assert a == cache_key("p:", "/x", {"a": 1, "b": "2"}) == "p:/x?a=1&b=2"
    assert cache_key("p:", "/x", {}) == "p:/x"


def test_second_request_is_served_from_redis(client, redis_url, cache_prefix):
    params = {"country": "France", "limit": 3}
    first = client.get("/api/v1/sales/metrics", params=params)
    second = client.get("/api/v1/sales/metrics", params=params)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.json() == second.json()
    other = client.get("/api/v1/sales/metrics", params={"country": "France", "limit": 4})
    assert other.headers["x-cache"] == "miss"
    stored = redis.Redis.from_url(redis_url)
    key = f"{cache_prefix}/api/v1/sales/metrics?country=France&limit=3&offset=0"
    assert stored.get(key).endswith(b"\n" + first.content)
    assert second.headers["x-total-count"] == first.headers["x-total-count"]
    assert second.headers["x-data-as-of"] == first.headers["x-data-as-of"]
    assert 0 < stored.pttl(key) <= 5000
    stored.close()


def test_in_process_tier_answers_without_redis(served, redis_url, cache_prefix, api_key):
    settings = make_settings(served.url, redis_url, cache_prefix, local_cache_seconds=30)
    path = "/api/v1/sales/summary"
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        first = client.get(path)
        stored = redis.Redis.from_url(redis_url)
        stored.delete(f"{cache_prefix}{path}")  # Redis forgets; the process still knows
        stored.close()
        second = client.get(path)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.content == first.content


def test_redis_down_still_answers_from_postgres(served, cache_prefix, api_key):
    settings = make_settings(served.url, "redis://127.0.0.1:1/0", cache_prefix)
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        started = time.perf_counter()
        responses = [client.get("/api/v1/monitoring/dashboard") for _ in range(5)]
        elapsed = time.perf_counter() - started
        ready = client.get("/ready")
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.headers["x-cache"] for r in responses} == {"miss"}
    assert responses[0].json()["total_transactions_today"] >= 0
    assert elapsed < 2.0  # the cache is skipped after the first failure
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False


def test_database_down_is_503_not_500(redis_url, cache_prefix, api_key):
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", redis_url, cache_prefix,
                             db_timeout_seconds=1)
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        response = client.get("/api/v1/sales/summary")
        assert client.get("/health").status_code == 200
    assert response.status_code == 503
    assert "database" in response.json()["detail"]



def test_queries_run_under_a_statement_timeout(served, redis_url, cache_prefix):
    settings = make_settings(served.url, redis_url, cache_prefix, statement_timeout_ms=150)

    async def run(pool, statement):
        async with pool.connection() as conn:
            return await (await conn.execute(statement)).fetchone()

    with TestClient(create_app(settings)) as client:
        pool = client.app.state.pool
        shown = client.portal.call(run, pool, "SHOW statement_timeout")
        with pytest.raises(psycopg.errors.QueryCanceled):
            client.portal.call(run, pool, "SELECT pg_sleep(1)")
    assert shown["statement_timeout"] == "150ms"
    assert issubclass(psycopg.errors.QueryCanceled, psycopg.OperationalError)  # → 503
