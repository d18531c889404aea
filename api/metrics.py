"""Prometheus metrics of the API: requests and their latency per route, and the response
cache's hits and misses (its hit ratio), served at ``/metrics`` in the text format."""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")  # {name} or {name:converter} in a route path
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """The API's metrics, in a registry of their own (one per application)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("globalmart_api_requests", "HTTP requests answered.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("globalmart_api_request_seconds",
                                 "Time to answer a request, by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cache = Counter("globalmart_api_cache_lookups",
                             "Response cache lookups by result (hit, miss).", ["result"],
                             registry=self.registry)


class RequestMetrics:
    """ASGI middleware counting every request and timing it under its route's template (so
    ``/x/{name}`` is one series, and unmatched paths are one series)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (``/api/v1/x/{name}``): the route knows its path
    below the routers' prefixes, which carry no parameters here; "unmatched" without a route."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    template: str = route.path
    path: str = scope["path"]
    params = scope.get("path_params", {})
    rendered = _PARAMETER.sub(lambda m: str(params.get(m.group(1), m.group(0))), template)
    return path[: len(path) - len(rendered)] + template if path.endswith(rendered) else template
