"""The dashboard's key exchange: a key in the link becomes a short-lived HttpOnly, SameSite=Strict
session cookie and the browser lands on a URL without it; sessions end with their key, their
time, or a logout."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from globalmart.keys import create_key, revoke_key

from .conftest import LiveServer, make_settings  # noqa: TID252

COOKIE = "globalmart_session"
PATH = "/api/v1/sales/summary"


def _exchange(server: LiveServer, key: str) -> httpx.Response:
    return httpx.get(f"{server.url}/dashboard", params={"key": key}, follow_redirects=False)


def test_the_link_is_exchanged_for_a_session_cookie_and_redirected(live_server, api_key, served):
    response = _exchange(live_server, api_key)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= flags and "secure" not in flags  # plain HTTP
    assert "samesite=strict" in cookie.lower()
    token = response.cookies[COOKIE]
    assert api_key not in cookie and len(token) >= 40
    with psycopg.connect(served.url) as conn:  # stored as a hash only, for about an hour
        (expires,) = conn.execute("SELECT expires_at FROM api.sessions WHERE token_hash = "
                                  "encode(sha256(%s::bytea), 'hex')", (token.encode(),)).fetchone()
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(minutes=60)
    answer = httpx.get(f"{live_server.url}{PATH}", cookies={COOKIE: token})
    assert answer.status_code == 200 and "metrics" in answer.json()


def test_a_refused_key_gets_no_session(live_server):
    response = _exchange(live_server, "gm_not-a-key")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard#key-refused"
    assert "set-cookie" not in response.headers
    assert httpx.get(f"{live_server.url}{PATH}", cookies={COOKIE: "forged"}).status_code == 403


def test_sessions_end_with_their_key_and_on_logout(served, redis_url, cache_prefix):
    name = f"session-{uuid.uuid4().hex[:8]}"
    key = create_key(served.url, name)
    settings = make_settings(served.url, redis_url, cache_prefix, key_cache_seconds=0)
    with LiveServer(settings) as server:
        first = _exchange(server, key).cookies[COOKIE]
        second = httpx.post(f"{server.url}/dashboard/session", json={"key": key})
        assert second.status_code == 204
        token = second.cookies[COOKIE]
        assert httpx.get(f"{server.url}{PATH}", cookies={COOKIE: first}).status_code == 200
        out = httpx.delete(f"{server.url}/dashboard/session", cookies={COOKIE: first})
        assert out.status_code == 204 and 'globalmart_session=""' in out.headers["set-cookie"]
        assert httpx.get(f"{server.url}{PATH}", cookies={COOKIE: first}).status_code == 403
        assert httpx.get(f"{server.url}{PATH}", cookies={COOKIE: token}).status_code == 200
        revoke_key(served.url, name)
        assert httpx.get(f"{server.url}{PATH}", cookies={COOKIE: token}).status_code == 403
        assert httpx.post(f"{server.url}/dashboard/session",
                          json={"key": key}).status_code == 403


def test_an_expired_session_is_refused(served, redis_url, cache_prefix, api_key):
    settings = make_settings(served.url, redis_url, cache_prefix, key_cache_seconds=0)
    with LiveServer(settings) as server:
        token = _exchange(server, api_key).cookies[COOKIE]
        with psycopg.connect(served.url) as conn:
            conn.execute("UPDATE api.sessions SET expires_at = now() - interval '1 second' "
                         "WHERE token_hash = encode(sha256(%s::bytea), 'hex')", (token.encode(),))
        assert httpx.get(f"{server.url}{PATH}", cookies={COOKIE: token}).status_code == 403


def test_in_a_browser_the_key_leaves_the_address_bar(live_server, api_key):
    """Headless Chromium opens the link with the key: it lands on /dashboard, the page loads
    with the cookie (which its scripts cannot read), and no request it makes carries the key
    or a Referer."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            sent: list[tuple[str, dict[str, str]]] = []
            page.on("request", lambda request: sent.append((request.url, request.headers)))
            page.goto(f"{live_server.url}/dashboard?key={api_key}")
            page.wait_for_function("() => document.body.dataset.loaded !== undefined",
                                   timeout=60_000)
            assert page.evaluate("document.body.dataset.loaded") == "1"
            assert page.url == f"{live_server.url}/dashboard"
            assert page.evaluate("document.cookie") == ""  # HttpOnly
            (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            api_calls = [(u, h) for u, h in sent if "/api/v1/" in u]
            assert api_calls
            assert all("x-api-key" not in h and not h.get("referer") for _, h in api_calls)
            assert not any(api_key in u for u, _ in sent[1:])  # only the link itself had it
            assert api_key not in page.content()
            page.click("#forget-key")
            page.wait_for_selector("#key-form:not([hidden])")
            assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
        finally:
            browser.close()
