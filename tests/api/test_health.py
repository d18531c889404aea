"""Liveness and readiness."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app

from .conftest import make_settings  # noqa: TID252


def test_health_needs_no_key(settings):
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_ready_when_every_dependency_answers(served, redis_url, cache_prefix, broker):
    settings = make_settings(served.url, redis_url, cache_prefix, kafka=broker.bootstrap_servers)
    with TestClient(create_app(settings)) as client:
        response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "postgres": True, "redis": True, "kafka": True}


def test_ready_names_what_is_down(served, cache_prefix):
    closed = "127.0.0.1:1"
    settings = make_settings(served.url, f"redis://{closed}/0", cache_prefix, kafka=closed)
    with TestClient(create_app(settings)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["postgres"]["ok"] is True
    assert checks["redis"]["ok"] is False and checks["redis"]["error"]
    assert checks["kafka"]["ok"] is False and checks["kafka"]["error"]
