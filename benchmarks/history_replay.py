"""The README's history command on the embedded runtime: minutes until the warehouse is exact.

Runs ``globalmart up --no-history`` on a fresh home in a temporary folder with free ports, then
the README's ``globalmart generate --history-days 7 --history-rate 4 --duration 0`` (options
below) while live traffic flows, and waits, with nothing done by hand, until every past day of
``warehouse.fact_sales`` holds exactly the distinct transactions the ``transactions`` topic has
for it (read back from the broker). Prints the minutes to send the history and to an exact
warehouse; stops ``up`` with SIGINT at the end.

Usage: ``.venv/bin/python benchmarks/history_replay.py [--days 7] [--history-rate 4]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from globalmart.embedded import free_port
from globalmart.kafka import read_to_end

GLOBALMART = str(Path(sys.executable).parent / "globalmart")


def transactions_per_day(bootstrap: str) -> Counter[date]:
    """Distinct transactions per UTC day in the topic (the truth, read from the broker)."""
    seen: dict[str, date] = {}
    for value in read_to_end(bootstrap, ["transactions"], timeout=300):
        event = json.loads(value)
        seen.setdefault(event["event_id"], datetime.fromisoformat(
            event["event_time"].replace("Z", "+00:00")).astimezone(UTC).date())
    return Counter(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--history-rate", type=float, default=4)
    parser.add_argument("--timeout-minutes", type=float, default=45)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="globalmart-history-"))
    pg_port, kafka_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOBALMART_")}
    env.update({"GLOBALMART_HOME": str(home / "home"),
                "GLOBALMART_EMBEDDED_PG_PORT": str(pg_port),
                "GLOBALMART_EMBEDDED_KAFKA_PORT": str(kafka_port),
                "GLOBALMART_EMBEDDED_KAFKA_CONTROLLER_PORT": str(free_port()),
                "GLOBALMART_API_PORT": str(free_port()),
                "GLOBALMART_DAGSTER_PORT": str(free_port())})
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; home {home}", flush=True)
    up = subprocess.Popen([GLOBALMART, "up", "--no-history"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in up.stdout or []],
                     daemon=True).start()
    url = f"postgresql://postgres@127.0.0.1:{pg_port}/globalmart"
    bootstrap = f"127.0.0.1:{kafka_port}"
    try:
        while "GlobalMart is up" not in (line := lines.get(timeout=600)):
            print(f"  | {line.rstrip()}", flush=True)
        started = time.monotonic()
        command = [GLOBALMART, "generate", "--history-days", str(args.days), "--history-rate",
                   f"{args.history_rate:g}", "--duration", "0"]
        print("$ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, env={**env, "GLOBALMART_DATABASE_URL": url,
                                     "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": bootstrap},
                       check=True, stdout=subprocess.DEVNULL)
        sent = (time.monotonic() - started) / 60
        print(f"history sent in {sent:.1f} min", flush=True)
        today = datetime.now(UTC).date()
        days = [today - timedelta(days=n) for n in range(args.days, 0, -1)]
        truth = transactions_per_day(bootstrap)
        print("truth per day: " + ", ".join(f"{d}: {truth[d]:,}" for d in days), flush=True)
        deadline = started + args.timeout_minutes * 60
        built: dict[date, int] = {}
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                built = dict(conn.execute(
                    "SELECT event_date, count(DISTINCT transaction_id) FROM warehouse.fact_sales "
                    "WHERE event_date = ANY(%s) GROUP BY 1", (days,)).fetchall())
            exact = [d for d in days if built.get(d) == truth[d]]
            print(f"  [{(time.monotonic() - started) / 60:5.1f} min] exact days: {len(exact)} "
                  f"of {len(days)}", flush=True)
            if len(exact) == len(days):
                break
            while not lines.empty():
                print(f"  | {lines.get().rstrip()}", flush=True)
            time.sleep(20)  # polling interval of a condition with a deadline
        total = (time.monotonic() - started) / 60
        events = sum(truth.values())
        print(f"\n{args.days} days at history rate {args.history_rate:g} "
              f"({events:,} transactions): sent in {sent:.1f} min; warehouse exact for every day "
              f"after {total:.1f} min" if all(built.get(d) == truth[d] for d in days)
              else f"not exact within {args.timeout_minutes} min: {built}")
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(180)


if __name__ == "__main__":
    main()
