"""``globalmart up`` as a user runs it: it starts, events flow, Ctrl-C stops it with exit 0."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from globalmart.embedded import free_port, port_is_free
from globalmart.kafka import read_to_end
from tests.waiting import wait_until

GLOBALMART = str(Path(sys.executable).parent / "globalmart")


class Up:
    """A running ``globalmart up`` whose output is read line by line."""

    def __init__(self, home: Path, args: list[str], extra_env: dict[str, str],
                 ports: tuple[int, int, int] | None = None) -> None:
        self.ports = ports or (free_port(), free_port(), free_port())
        self.pg_port, self.kafka_port, controller_port = self.ports
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GLOBALMART_") and k != "DAGSTER_HOME"}
        env.update({
            "GLOBALMART_HOME": str(home),
            "GLOBALMART_EMBEDDED_PG_PORT": str(self.pg_port),
            "GLOBALMART_EMBEDDED_KAFKA_PORT": str(self.kafka_port),
            "GLOBALMART_EMBEDDED_KAFKA_CONTROLLER_PORT": str(controller_port),
            "GLOBALMART_STATUS_INTERVAL_S": "1",
            "GLOBALMART_STREAM_METRICS_PORT": str(free_port()),
            **extra_env,
        })
        self.process = subprocess.Popen(
            [GLOBALMART, "up", *args], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s:\n{''.join(self.output)}")

    def drain(self) -> str:
        """Everything printed so far."""
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def interrupt(self, timeout: float) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        self.drain()
        return code


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator:
    started: list[Up] = []

    def start(args: list[str], extra_env: dict[str, str] | None = None,
              ports: tuple[int, int, int] | None = None) -> Up:
        running = Up(tmp_path / "home", args, extra_env or {}, ports)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def _wait_for_messages(bootstrap: str, topic: str, timeout: float) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-up",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
            if messages:
                return len(messages)
        return 0
    finally:
        consumer.close()


def test_up_runs_the_generator_and_stops_cleanly_on_sigint(up_factory) -> None:
    up = up_factory(["--rate", "200", "--no-history", "--without", "stream", "--without",
                     "dagster", "--without", "api"])

    up.wait_for_line("GlobalMart is up", timeout=120)
    received = _wait_for_messages(f"127.0.0.1:{up.kafka_port}", "transactions", timeout=60)
    up.wait_for_line("ingest:", timeout=30)
    code = up.interrupt(timeout=90)

    assert received > 0, "".join(up.output)
    assert code == 0, "".join(up.output)
    assert port_is_free(up.pg_port) and port_is_free(up.kafka_port)


def test_up_refuses_a_taken_port_naming_the_variable(up_factory, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = up_factory(["--without", "generator", "--without", "stream", "--without", "dagster"],
                        {"GLOBALMART_API_PORT": str(port)})
        code = up.process.wait(timeout=120)
        up.interrupt(timeout=5)

    output = "".join(up.output)
    assert code == 1
    assert f"port {port}" in output and "GLOBALMART_API_PORT" in output
    assert port_is_free(up.pg_port) and port_is_free(up.kafka_port)


@pytest.mark.slow
def test_up_runs_the_whole_platform_and_a_first_start_fills_the_warehouse(up_factory) -> None:
    """Every component starts and is healthy, the stream writes sales metrics, the first start's
    history reaches the warehouse through the sensor (each past day built), Ctrl-C stops it."""
    up = up_factory(["--rate", "300"], {"GLOBALMART_API_PORT": str(free_port()),
                                        "GLOBALMART_DAGSTER_PORT": str(free_port()),
                                        "GLOBALMART_HISTORY_DAYS": "2"})

    up.wait_for_line("GlobalMart is up", timeout=400)
    assert "first start" in up.drain() and "2 past days" in up.drain()
    url = f"postgresql://postgres@127.0.0.1:{up.pg_port}/globalmart"

    def count(sql: str) -> int:
        assert up.process.poll() is None, up.drain()
        with psycopg.connect(url) as conn:
            return int(conn.execute(sql).fetchone()[0])

    wait_until(lambda: count("SELECT count(*) FROM sales_metrics"), 240, "sales metrics", poll=1)
    wait_until(lambda: count("SELECT count(DISTINCT event_date) FROM warehouse.fact_sales "
                             "WHERE event_date >= current_date - 2 AND event_date < current_date"
                             ) == 2, 900, "the two past days in the warehouse", poll=5)
    assert count("SELECT count(*) FROM marts.customer_rfm_analysis") > 0
    assert up.interrupt(timeout=120) == 0, up.drain()



def _transactions_in_topic(bootstrap: str) -> tuple[int, Decimal]:
    """The truth, read from the broker: distinct transactions and their revenue (Σ lines)."""
    revenue: dict[str, Decimal] = {}
    for value in read_to_end(bootstrap, ["transactions"]):
        event = json.loads(value)
        revenue[event["event_id"]] = sum(
            (Decimal(str(line["unit_price"])) * line["quantity"] for line in event["items"]),
            Decimal(0))
    return len(revenue), sum(revenue.values(), Decimal(0))


def _orders_counted(url: str) -> tuple[int, Decimal]:
    with psycopg.connect(url) as conn:
        count, revenue = conn.execute(
            "SELECT coalesce(sum(order_count), 0), coalesce(sum(revenue), 0) "
            "FROM order_metrics").fetchone()
    return int(count), Decimal(revenue)


@pytest.mark.slow
def test_events_waiting_at_ctrl_c_are_processed_by_the_next_up(up_factory) -> None:
    """Ctrl-C while the stream lags behind the generator, then `up` again: the events that
    waited in Kafka are counted, each exactly once (the broker kept its log on disk)."""
    lagging = {"GLOBALMART_STREAM_MAX_OFFSETS_PER_TRIGGER": "300"}
    first = up_factory(["--rate", "1000", "--no-history", "--without", "dagster", "--without",
                        "api"], lagging)
    first.wait_for_line("GlobalMart is up", timeout=300)
    url = f"postgresql://postgres@127.0.0.1:{first.pg_port}/globalmart"
    wait_until(lambda: first.process.poll() is not None or _orders_counted(url)[0], 240,
               "a first counted order", poll=1)
    assert first.process.poll() is None, first.drain()
    counted_at_stop = _orders_counted(url)[0]
    assert first.interrupt(timeout=120) == 0, first.drain()
    assert port_is_free(first.pg_port) and port_is_free(first.kafka_port), first.drain()

    second = up_factory(["--without", "generator", "--without", "dagster", "--without", "api"])
    second.wait_for_line("GlobalMart is up", timeout=300)
    truth = _transactions_in_topic(f"127.0.0.1:{second.kafka_port}")
    assert truth[0] > counted_at_stop, "no events were waiting at Ctrl-C"
    url = f"postgresql://postgres@127.0.0.1:{second.pg_port}/globalmart"
    wait_until(lambda: second.process.poll() is not None or _orders_counted(url)[0] >= truth[0],
               300, "every waiting order counted", poll=1)
    counted = _orders_counted(url)
    assert second.interrupt(timeout=120) == 0, "".join(second.output)
    assert counted == truth


def _batches(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM stream_state.batch_commits").fetchone()[0])


def _wait(condition, timeout: float, up: Up, what: str) -> None:
    """``wait_until`` while ``up`` runs (its output in the failure)."""
    def check() -> bool:
        assert up.process.poll() is None, f"up exited while waiting for {what}:\n{up.drain()}"
        return bool(condition())

    wait_until(check, timeout, what, poll=0.5)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def _pid_of(home: Path, name: str) -> int:
    return int((home / "run" / f"{name}.pid").read_text().split()[0])


@pytest.mark.slow
def test_a_killed_stream_is_restarted_and_goes_on(up_factory, tmp_path: Path) -> None:
    up = up_factory(["--rate", "200", "--no-history", "--without", "dagster", "--without",
                     "api"])
    up.wait_for_line("GlobalMart is up", timeout=300)
    url = f"postgresql://postgres@127.0.0.1:{up.pg_port}/globalmart"
    _wait(lambda: _batches(url) > 0, 240, up, "a first committed batch")
    killed = _pid_of(tmp_path / "home", "stream")
    os.killpg(killed, signal.SIGKILL)  # the application and its JVM, as a crash would
    up.wait_for_line("stream exited with -9; restarting in 1 s", timeout=30)
    up.wait_for_line("stream restarted", timeout=30)
    restarted = _pid_of(tmp_path / "home", "stream")
    assert restarted != killed
    before = _batches(url)
    _wait(lambda: _batches(url) > before, 240, up, "batches of the restarted stream")
    assert up.interrupt(timeout=120) == 0, up.drain()


@pytest.mark.slow
def test_up_killed_leaves_nothing_that_stops_the_next_up(up_factory, tmp_path: Path) -> None:
    """SIGKILL to `up` itself: its children die with it (the embedded PostgreSQL, which its
    pg_ctl daemonised, is found and stopped by the next `up`), and `up` starts again on the
    same home and ports."""
    first = up_factory(["--rate", "100", "--no-history", "--without", "dagster"],
                       {"GLOBALMART_API_PORT": str(free_port())})
    first.wait_for_line("GlobalMart is up", timeout=300)
    home = tmp_path / "home"
    children = {name: _pid_of(home, name) for name in ("kafka", "generator", "stream", "api")}
    first.process.kill()
    first.process.wait(30)
    wait_until(lambda: not any(_running(pid) for pid in children.values()), 60,
               f"the children of the killed up to die: {children}", poll=0.2)
    second = up_factory(["--rate", "100", "--without", "dagster"],
                        {"GLOBALMART_API_PORT": str(free_port())}, ports=first.ports)
    second.wait_for_line("GlobalMart is up", timeout=300)
    output = second.drain()
    assert "left running by an earlier `globalmart up`" in output  # the PostgreSQL server
    assert "first start" not in output  # not an empty home: no history again
    assert second.interrupt(timeout=120) == 0, second.drain()
    assert port_is_free(first.pg_port) and port_is_free(first.kafka_port)


def test_a_crash_loop_stops_the_platform_with_a_clear_message(up_factory) -> None:
    up = up_factory(["--no-history", "--without", "stream", "--without", "dagster",
                     "--without", "api"],
                    {"GLOBALMART_GENERATOR_USERS": "many",  # refused at once, every time
                     "GLOBALMART_RESTART_LIMIT": "2", "GLOBALMART_RESTART_WINDOW_MINUTES": "5"})
    code = up.process.wait(timeout=180)
    output = up.drain()
    assert code == 1, output
    assert "generator exited with" in output and "restarting in 1 s" in output
    assert "restarting in 2 s" in output
    assert "a crash loop" in output and "Stopping the platform" in output
    assert port_is_free(up.pg_port) and port_is_free(up.kafka_port)
