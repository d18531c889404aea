"""API throughput and latency: /monitoring/dashboard and /sales/metrics, cached and uncached,
beside a trivial endpoint (/health, the ceiling), one uvicorn worker.

Three servers run as subprocesses over the same loaded database: "cached" as configured by
default (Redis, TTL 60 s here, plus the one-second in-process tier), "redis" (Redis only, no
in-process tier) and "uncached" (TTL 0: every request reads PostgreSQL). Two load shapes, each
from a separate process on loopback:

* closed loop (wrk, 8 connections, 10 s): the most requests/s one worker serves, with wrk's
  p50/p99;
* open loop at a fixed 500 requests/s (an asyncio client, 3 runs of 10 s): p50/p99 measured
  from each request's *scheduled* start, so a stalled server cannot hide its queueing; the
  median run (by p99) is reported, since the machine is shared and one stall of a few hundred
  milliseconds decides a run's p99.

Usage: .venv/bin/python benchmarks/api_latency.py [--seconds 10] [--rate 500]
Needs PostgreSQL (GLOBALMART_BENCH_DATABASE_URL, default the local server) and Redis
(GLOBALMART_BENCH_REDIS_URL, default 127.0.0.1:6379/15), and `wrk` (Debian package).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis

from globalmart import db
from globalmart.embedded import free_port
from globalmart.keys import create_key

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("GLOBALMART_BENCH_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GLOBALMART_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ENDPOINTS = {
    "trivial /health": "/health",
    "/monitoring/dashboard": "/api/v1/monitoring/dashboard",
    "/sales/metrics": "/api/v1/sales/metrics?country=USA&limit=100",
}


def load_dataset(url: str, transactions: int) -> None:
    spec = importlib.util.spec_from_file_location("serving_dataset",
                                                  REPO / "tests" / "api" / "dataset.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_dataset"] = module
    spec.loader.exec_module(module)
    module.load(url, module.build(datetime.now(UTC), n_transactions=transactions))


def start_server(db_url: str, prefix: str, ttl: float,
                 local: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GLOBALMART_DATABASE_URL": db_url, "GLOBALMART_REDIS_URL": REDIS_URL,
           "GLOBALMART_API_CACHE_PREFIX": prefix, "GLOBALMART_API_CACHE_TTL_SECONDS": str(ttl),
           "GLOBALMART_API_MART_CACHE_TTL_SECONDS": str(ttl),
           "GLOBALMART_API_LOCAL_CACHE_SECONDS": str(local)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host",
         "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
         "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not start")


def wrk(url: str, key: str, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of a closed-loop run."""
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-H", f"X-API-Key: {key}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, percentile("50"), percentile("99")


async def _connection(host: str, port: int, request: bytes, jobs: asyncio.Queue,
                      latencies: list[float], errors: list[str]) -> None:
    """One keep-alive HTTP/1.1 connection taking scheduled requests from the queue."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (scheduled := await jobs.get()) is not None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n")[0].decode())
    finally:
        writer.close()


async def _open_loop(url: str, key: str, rate: float, seconds: float) -> list[float]:
    """Offer ``rate`` requests/s for ``seconds``; latency counts from the scheduled start.

    A small raw HTTP client (not httpx) so that the client, sharing the CPUs with the server,
    costs little and does not become the bottleneck it measures."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-API-Key: {key}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    jobs: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    workers = [asyncio.create_task(_connection(parts.hostname or "127.0.0.1", parts.port or 80,
                                               request, jobs, latencies, errors))
               for _ in range(32)]
    start = time.perf_counter() + 0.2
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait(scheduled)
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return latencies


def _open_loop_process(url: str, key: str, rate: float, seconds: float, queue) -> None:
    started = time.perf_counter()
    latencies = asyncio.run(_open_loop(url, key, rate, seconds))
    queue.put((latencies, time.perf_counter() - started))


def open_loop(url: str, key: str, rate: float, seconds: float) -> tuple[float, float, float]:
    """(achieved requests/s, p50 ms, p99 ms) at a fixed offered rate, from another process."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=_open_loop_process,
                                      args=(url, key, rate, seconds, queue))
    process.start()
    latencies, elapsed = queue.get(timeout=seconds * 4 + 30)
    process.join(timeout=30)
    quantiles = statistics.quantiles(latencies, n=100)
    return len(latencies) / (elapsed - 0.2), quantiles[49], quantiles[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--transactions", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3, help="open-loop runs per endpoint")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")

    name = f"gm_bench_api_{uuid.uuid4().hex[:8]}"
    db_url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    db.ensure_database(db_url)
    prefix = f"gmbench:{uuid.uuid4().hex}:"
    servers: list[subprocess.Popen] = []
    try:
        db.upgrade(db_url)
        load_dataset(db_url, args.transactions)
        with psycopg.connect(db_url) as conn:
            windows = conn.execute("SELECT count(*) FROM sales_metrics").fetchone()[0]
        key = create_key(db_url, "bench")
        modes: dict[str, str] = {}
        for mode, ttl, local in (("cached", 60, 1), ("redis", 60, 0), ("uncached", 0, 0)):
            process, modes[mode] = start_server(db_url, prefix, ttl=ttl, local=local)
            servers.append(process)
        print(f"dataset: {args.transactions} transactions, {windows} sales_metrics windows; "
              f"one uvicorn worker per server; {os.cpu_count()} CPUs shared with the client")
        print(f"{'endpoint':28} {'mode':9} {'closed loop (wrk -c8)':>30}   "
              f"{'open loop at ' + str(int(args.rate)) + ' req/s':>30}")
        for label, path in ENDPOINTS.items():
            chosen = {"—": modes["cached"]} if path == "/health" else modes
            for mode, base in chosen.items():
                rps, p50, p99 = wrk(base + path, key, args.seconds)
                runs = sorted((open_loop(base + path, key, args.rate, args.seconds)
                               for _ in range(args.runs)), key=lambda run: run[2])
                orps, op50, op99 = runs[len(runs) // 2]
                all_p99 = "/".join(f"{run[2]:.0f}" for run in runs)
                print(f"{label:28} {mode:9} {rps:8.0f} req/s p50 {p50:6.2f} p99 {p99:6.2f} ms"
                      f"   {orps:6.0f} req/s p50 {op50:6.2f} p99 {op99:6.2f} ms"
                      f"  (p99 of the runs: {all_p99} ms)", flush=True)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=20)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
