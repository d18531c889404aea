"""Property-based run over the OpenAPI schema (schemathesis): whatever the parameters, the API
answers within its documented statuses and schemas, and never with a server error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.config import ApiSettings
from api.main import create_app
from globalmart.keys import create_key

from .conftest import LiveServer, make_settings  # noqa: TID252

# /ready has no input to vary and is 503 by design when a dependency is slow (test_health.py).
schema = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi()).exclude(
    path="/ready")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_target(served, redis_url) -> Iterator[tuple[str, str]]:
    """A live server over the loaded dataset, caching in a private prefix."""
    prefix = f"gmtest:{uuid.uuid4().hex}:"
    key = create_key(served.url, f"fuzz-{uuid.uuid4().hex[:8]}")
    with LiveServer(make_settings(served.url, redis_url, prefix)) as server:
        yield server.url, key
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_target):
    base_url, key = fuzz_target
    case.call_and_validate(base_url=base_url, headers={"X-API-Key": key}, checks=CHECKS,
                           timeout=10)
