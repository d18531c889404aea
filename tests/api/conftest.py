"""Fixtures of the API tests: a database loaded with the serving dataset, API keys, the app
in-process (TestClient) and over real HTTP (uvicorn in a thread), each with its own Redis key
prefix that is cleaned up afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from api.config import ApiSettings
from api.main import create_app
from globalmart.embedded import free_port
from globalmart.keys import create_key
from globalmart.settings import PlatformSettings

from . import dataset as ds  # noqa: TID252


@dataclass
class Served:
    url: str
    data: ds.Dataset


@pytest.fixture(scope="session")
def served(make_database) -> Served:
    """A migrated database holding the serving dataset."""
    url = make_database()
    data = ds.build(datetime.now(UTC))
    ds.load(url, data)
    return Served(url, data)


@pytest.fixture(scope="session")
def api_key(served: Served) -> str:
    """An active key."""
    return create_key(served.url, f"tests-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cache_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test alone, deleted afterwards."""
    prefix = f"gmtest:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def make_settings(db_url: str, redis_url: str, prefix: str, kafka: str = "127.0.0.1:1",
                  **overrides) -> ApiSettings:
    """Settings pointing at the given services (without the in-process tier of the cache,
    unless asked, so that tests see Redis itself)."""
    overrides.setdefault("local_cache_seconds", 0)
    platform = PlatformSettings(database_url=db_url, redis_url=redis_url,
                                kafka_bootstrap_servers=kafka)
    return ApiSettings(platform=platform, cache_prefix=prefix, **overrides)


@pytest.fixture
def settings(served: Served, redis_url: str, cache_prefix: str) -> ApiSettings:
    return make_settings(served.url, redis_url, cache_prefix)


@pytest.fixture
def client(settings: ApiSettings, api_key: str) -> Iterator[TestClient]:
    """The app in-process, sending a valid key."""
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as test_client:
        yield test_client


class LiveServer:
    """uvicorn serving an app on a free port in a background thread."""

    def __init__(self, settings: ApiSettings) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


@pytest.fixture
def live_server(settings: ApiSettings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server
