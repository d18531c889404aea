"""Soak of the embedded runtime: ``globalmart up`` at ``--rate`` events/s for ``--minutes``,
with the Kafka broker's CPU and memory sampled every minute (they must stay flat, not grow with
its log), beside its log's size on disk, the records in the topics and the stream's lag.

Runs ``globalmart up`` on a fresh home in a temporary folder with free ports (nothing of a
running platform is touched), stops it with SIGINT at the end and prints one row a minute and a
summary (first and last ten minutes).

Usage: ``.venv/bin/python benchmarks/soak.py [--minutes 60] [--rate 500] [--without dagster]``
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

from globalmart.contracts import INPUT_TOPICS
from globalmart.embedded import free_port
from globalmart.kafka import topic_end_offsets

GLOBALMART = str(Path(sys.executable).parent / "globalmart")


def _lines(process: subprocess.Popen, into: queue.Queue) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.put(line)


def _wait_up(process: subprocess.Popen, lines: queue.Queue, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                raise SystemExit(f"globalmart up exited with {process.returncode}") from None
            continue
        print(f"  | {line.rstrip()}", flush=True)
        if "GlobalMart is up" in line:
            return
    raise SystemExit("globalmart up was not up in time")


def _broker(up: psutil.Process) -> psutil.Process:
    for child in up.children(recursive=True):
        if "kafka.Kafka" in " ".join(child.cmdline()):
            return child
    raise SystemExit("no Kafka broker process under globalmart up")


def _size(path: Path) -> int:
    """Bytes ``path`` takes on disk (Kafka's index files are sparse: their length is not)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--without", action="append", default=[],
                        help="components to leave out (as `globalmart up --without`)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gm-soak-"))
    ports = {name: free_port() for name in ("PG", "KAFKA", "CONTROLLER", "API", "DAGSTER")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOBALMART_")}
    env.update({"GLOBALMART_HOME": str(home),
                "GLOBALMART_EMBEDDED_PG_PORT": str(ports["PG"]),
                "GLOBALMART_EMBEDDED_KAFKA_PORT": str(ports["KAFKA"]),
                "GLOBALMART_EMBEDDED_KAFKA_CONTROLLER_PORT": str(ports["CONTROLLER"]),
                "GLOBALMART_API_PORT": str(ports["API"]),
                "GLOBALMART_DAGSTER_PORT": str(ports["DAGSTER"]),
                "GLOBALMART_STATUS_INTERVAL_S": "60"})
    argv = [GLOBALMART, "up", "--rate", f"{args.rate:g}"]
    for name in args.without:
        argv += ["--without", name]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; {' '.join(argv[1:])}; home {home}")
    up = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, stdin=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(up, lines), daemon=True).start()
    bootstrap = f"127.0.0.1:{ports['KAFKA']}"
    db = f"postgresql://postgres@127.0.0.1:{ports['PG']}/globalmart"
    rows: list[tuple[float, float, float, int, int, int]] = []
    try:
        _wait_up(up, lines, timeout=600)
        broker = _broker(psutil.Process(up.pid))
        print("minute  broker_cpu_%  broker_rss_MiB  kafka_log_MiB  records_in_topics  "
              "stream_lag", flush=True)
        last_cpu = sum(broker.cpu_times()[:2])
        last_at = time.monotonic()
        for minute in range(1, int(args.minutes) + 1):
            time.sleep(max(0.0, last_at + 60 - time.monotonic()))  # the sampling interval
            cpu = sum(broker.cpu_times()[:2])
            now = time.monotonic()
            share = 100 * (cpu - last_cpu) / (now - last_at)
            last_cpu, last_at = cpu, now
            rss = broker.memory_info().rss / 2**20
            log_size = _size(home / "kafka") / 2**20
            records = sum(topic_end_offsets(bootstrap, list(INPUT_TOPICS)).values())
            with psycopg.connect(db) as conn:
                lag = int(conn.execute(
                    "SELECT coalesce(sum(lag_records), 0) FROM (SELECT DISTINCT ON (topic) "
                    "lag_records FROM pipeline_metrics WHERE query_name = 'realtime' "
                    "ORDER BY topic, processed_at DESC) l").fetchone()[0])  # type: ignore[index]
            rows.append((minute, share, rss, int(log_size), records, lag))
            print(f"{minute:6d}  {share:11.1f}  {rss:14.0f}  {log_size:13.0f}  {records:17,d}  "
                  f"{lag:10,d}", flush=True)
            while not lines.empty():
                line = lines.get()
                if "exited" in line or "error" in line.lower():
                    print(f"  | {line.rstrip()}", flush=True)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=300)
    if len(rows) >= 20:
        first, last = rows[:10], rows[-10:]
        print(f"broker CPU % of a core: first ten minutes "
              f"{statistics.mean(r[1] for r in first):.1f}, last ten "
              f"{statistics.mean(r[1] for r in last):.1f}; RSS MiB: first ten "
              f"{statistics.mean(r[2] for r in first):.0f}, last ten "
              f"{statistics.mean(r[2] for r in last):.0f}; log on disk "
              f"{rows[-1][3]} MiB; {rows[-1][4]:,} records")


if __name__ == "__main__":
    main()
