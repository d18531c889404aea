"""First run: minutes from ``globalmart up`` on an empty home (its default history seeding)
until every guide endpoint and every dashboard panel has data.

Runs ``globalmart up`` on a fresh home in a temporary folder with free ports, reads the
dashboard link it prints (its API key), polls the API every 5 s and prints, per answer, the
minute it first had rows; stops ``up`` with SIGINT at the end.

Usage: ``.venv/bin/python benchmarks/first_run.py [--timeout-minutes 30] [--rate 500]``
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from globalmart.embedded import free_port

GLOBALMART = str(Path(sys.executable).parent / "globalmart")


def _rows(body: Any) -> bool:
    return bool(body)


# (path, params, has data) for every guide endpoint and every dashboard panel
CHECKS: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
    ("/api/v1/sales/metrics", {}, _rows),
    ("/api/v1/sales/summary", {"period": "today"}, lambda b: b["metrics"]["transaction_count"]),
    ("/api/v1/sales/summary", {"period": "month"}, lambda b: b["metrics"]["transaction_count"]),
    ("/api/v1/sales/timeline", {"minutes": 60}, lambda b: b["points"]),
    ("/api/v1/sales/by-country", {"period": "week"}, lambda b: b["countries"]),
    ("/api/v1/sales/by-category", {"period": "week"}, lambda b: b["categories"]),
    ("/api/v1/monitoring/dashboard", {}, lambda b: b["total_transactions_today"]),
    ("/api/v1/monitoring/anomalies", {"hours": 24}, _rows),
    ("/api/v1/alerts", {"hours": 24}, lambda b: b["items"]),
    ("/api/v1/customers/segments", {}, _rows),
    ("/api/v1/customers/segments/distribution", {}, lambda b: b["segments"]),
    ("/api/v1/products/performance", {}, _rows),
    ("/api/v1/products/top-performers", {}, lambda b: b["top_products"]),
    ("/api/v1/trends/sales", {"trend_type": "daily"}, lambda b: b["trends"]),
    ("/api/v1/trends/sales", {"trend_type": "weekly"}, lambda b: b["trends"]),
    ("/api/v1/trends/sales", {"trend_type": "monthly"}, lambda b: b["trends"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout-minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=500)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="globalmart-first-run-"))
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOBALMART_")}
    env.update({"GLOBALMART_HOME": str(home / "home"),
                "GLOBALMART_EMBEDDED_PG_PORT": str(free_port()),
                "GLOBALMART_EMBEDDED_KAFKA_PORT": str(free_port()),
                "GLOBALMART_EMBEDDED_KAFKA_CONTROLLER_PORT": str(free_port()),
                "GLOBALMART_API_PORT": str(api_port),
                "GLOBALMART_DAGSTER_PORT": str(free_port())})
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; home {home}", flush=True)
    started = time.monotonic()
    up = subprocess.Popen([GLOBALMART, "up", "--rate", f"{args.rate:g}"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    key = None
    first: dict[str, float] = {}
    deadline = started + args.timeout_minutes * 60
    try:
        while len(first) < len(CHECKS) and time.monotonic() < deadline:
            while not lines.empty():
                line = lines.get()
                print(f"  [{(time.monotonic() - started) / 60:5.1f} min] | {line.rstrip()}",
                      flush=True)
                if found := re.search(r"dashboard\?key=(\S+)", line):
                    key = found.group(1)
            if up.poll() is not None:
                raise SystemExit(f"globalmart up exited with {up.returncode}")
            if key is not None:
                for path, params, has_data in CHECKS:
                    name = f"{path}?{'&'.join(f'{k}={v}' for k, v in params.items())}"
                    if name in first:
                        continue
                    try:
                        answer = httpx.get(f"http://127.0.0.1:{api_port}{path}", params=params,
                                           headers={"X-API-Key": key}, timeout=10)
                    except httpx.HTTPError:
                        continue
                    if answer.status_code == 200 and has_data(answer.json()):
                        first[name] = (time.monotonic() - started) / 60
                        print(f"  {first[name]:5.1f} min  data: {name}", flush=True)
            time.sleep(5)  # polling interval of a condition with a deadline
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(180)
    print("\nanswer | minutes after `globalmart up` until it had data")
    for name, minutes in sorted(first.items(), key=lambda item: item[1]):
        print(f"{name} | {minutes:.1f}")
    missing = len(CHECKS) - len(first)
    print(f"all {len(CHECKS)} answers with data after {max(first.values()):.1f} min"
          if not missing else f"{missing} answers still without data")


if __name__ == "__main__":
    main()
