"""API keys: missing → 401, wrong or revoked → 403; stored hashed; CLI round trip."""

from __future__ import annotations

import hashlib

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.main import create_app
from globalmart.keys import create_key, revoke_key
from launcher.cli import main

from .conftest import make_settings  # noqa: TID252

PATH = "/api/v1/sales/summary"


def test_missing_key_is_401(settings):
    with TestClient(create_app(settings)) as client:
        response = client.get(PATH)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


def test_wrong_key_is_403(settings):
    with TestClient(create_app(settings), headers={"X-API-Key": "gm_not-a-key"}) as client:
        assert client.get(PATH).status_code == 403


def test_revoked_key_is_403(served, redis_url, cache_prefix):
    key = create_key(served.url, "to-revoke")
    settings = make_settings(served.url, redis_url, cache_prefix, key_cache_seconds=0)
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
        assert client.get(PATH).status_code == 200
        revoke_key(served.url, "to-revoke")
        assert client.get(PATH).status_code == 403


def test_keys_are_stored_hashed(served):
    key = create_key(served.url, "hashed")
    with psycopg.connect(served.url) as conn:
        stored = conn.execute("SELECT key_hash FROM api.api_keys WHERE name = 'hashed'").fetchone()
        everything = conn.execute("SELECT t::text FROM api.api_keys t").fetchall()
    assert stored[0] == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in row[0] for row in everything)


def test_cli_create_list_revoke(served, monkeypatch, settings):
    monkeypatch.setenv("GLOBALMART_DATABASE_URL", served.url)
    runner = CliRunner()
    created = runner.invoke(main, ["apikey", "create", "cli-key"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("gm_") and len(key) > 40
    duplicate = runner.invoke(main, ["apikey", "create", "cli-key"])
    assert duplicate.exit_code != 0 and "exists" in duplicate.output
    listed = runner.invoke(main, ["apikey", "list"])
    assert "cli-key" in listed.output and key not in listed.output
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
        assert client.get(PATH).status_code == 200
    assert runner.invoke(main, ["apikey", "revoke", "cli-key"]).exit_code == 0
    again = runner.invoke(main, ["apikey", "revoke", "cli-key"])
    assert again.exit_code != 0 and "no active key" in again.output
    assert "revoked" in runner.invoke(main, ["apikey", "list"]).output


def test_cli_rejects_bad_names(served, monkeypatch):
    monkeypatch.setenv("GLOBALMART_DATABASE_URL", served.url)
    result = CliRunner().invoke(main, ["apikey", "create", "no spaces; please"])
    assert result.exit_code != 0 and "invalid key name" in result.output


def test_cors_origins_from_settings(served, redis_url, cache_prefix, api_key):
    settings = make_settings(served.url, redis_url, cache_prefix,
                             cors_origins="http://dash.example:3000")
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        allowed = client.get(PATH, headers={"Origin": "http://dash.example:3000"})
        other = client.get(PATH, headers={"Origin": "http://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "http://dash.example:3000"
    assert "access-control-allow-origin" not in other.headers
