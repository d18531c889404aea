"""``globalmart up``: the embedded runtime's supervisor.

Stops what an earlier ``up`` on the same home left running, starts what is not configured
externally (PostgreSQL, the Kafka broker), applies the schema, creates the topics, then runs
each component as a child process in its own session (generator, streaming, Dagster, API),
waits for each to be healthy, prints what runs where and live ingestion rates. A component that
exits is restarted with back-off; only a crash loop (``restart_limit`` restarts within
``restart_window_minutes``) stops the platform. On Ctrl-C (or SIGTERM, SIGHUP, a closed output)
it stops everything it started, newest first; children also get SIGTERM if ``up`` itself dies.
On an empty home the generator first emits a short history, so that every mart has data
within minutes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import click
from confluent_kafka import KafkaException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from globalmart import db
from globalmart.contracts import ALL_TOPICS, INPUT_TOPICS
from globalmart.embedded import EmbeddedBroker, EmbeddedPostgres, PortInUseError, port_is_free
from globalmart.kafka import ensure_topics, topic_end_offsets
from globalmart.logs import FORMAT_VARIABLE
from globalmart.processes import die_with_parent, forget, record, stop_leftovers
from globalmart.settings import PlatformSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
_HEALTH_TIMEOUT_S = 180.0
_STOP_TIMEOUT_S = 30.0
_UP_KEY_NAME = "globalmart-up"
_WATCH_TICK_S = 0.5
_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 30.0


class RuntimeSettings(BaseSettings):
    """Ports and cadence of the processes ``globalmart up`` runs."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_", env_file=".env", extra="ignore")

    api_port: int = Field(default=8000, description="Port of the REST API and web dashboard.")
    dagster_port: int = Field(default=3000, description="Port of the Dagster webserver.")
    stream_metrics_port: int = Field(
        default=9108, description="Port of the streaming application's Prometheus metrics.")
    status_interval_s: float = Field(default=10.0, description="Seconds between rate lines.")
    restart_limit: int = Field(
        default=5, ge=0,
        description="Restarts of one component within restart_window_minutes that count as a "
                    "crash loop: the platform then stops with a message.")
    restart_window_minutes: float = Field(
        default=5.0, gt=0, description="Window of restart_limit, in minutes.")
    history_days: int = Field(
        default=3, ge=0,
        description="Past days the generator emits first on an empty GLOBALMART_HOME, so the "
                    "warehouse and marts have days to show (0 or `up --no-history`: none).")
    history_rate: float = Field(
        default=0.4, gt=0,
        description="Rate of that history (generate --history-rate: 0.4 is about 1,000 "
                    "transactions and 35,000 events a day).")


@dataclass
class Component:
    """A child process: how to start it and how to know it is healthy."""

    name: str
    argv: list[str]
    address: str
    port: int | None = None
    port_variable: str = ""
    health_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    restart_argv: list[str] | None = None  # argv of a restart, when it differs (no history)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic times
    restart_at: float | None = None  # when the pending restart is due


def _bin(name: str) -> str:
    """A console script of this installation (next to the running interpreter)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def dagster_database_url(db_url: str) -> str:
    """Dagster's own database (runs, events, schedules) on the platform's PostgreSQL server."""
    return urlunsplit(urlsplit(db_url)._replace(path="/dagster"))


def _dagster_storage_env(db_url: str) -> dict[str, str]:
    """The variables dagster.yaml reads for its PostgreSQL storage."""
    parts = urlsplit(dagster_database_url(db_url))
    return {
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USER": unquote(parts.username or "postgres"),
        "DAGSTER_PG_PASSWORD": unquote(parts.password or ""),
        "DAGSTER_PG_DB": "dagster",
    }


def _components(settings: PlatformSettings, runtime: RuntimeSettings, rate: float,
                without: set[str], history_days: int) -> list[Component]:
    home = settings.home.resolve()
    dagster_home = home / "dagster"
    dagster_url = dagster_database_url(settings.db_url)
    live = [_bin("globalmart"), "generate", "--rate", f"{rate:g}"]
    history = ["--history-days", str(history_days), "--history-rate",
               f"{runtime.history_rate:g}"] if history_days else []
    wanted = [
        Component("generator", [*live, *history],
                  f"{rate:g} events/s into Kafka"
                  + (f", after {history_days} days of history" if history else ""),
                  restart_argv=live),
        Component("stream", [_bin("globalmart"), "stream"],
                  f"Spark streaming, lake {settings.lake}; metrics "
                  f"http://127.0.0.1:{runtime.stream_metrics_port}/metrics",
                  port=runtime.stream_metrics_port,
                  port_variable="GLOBALMART_STREAM_METRICS_PORT",
                  health_url=f"http://127.0.0.1:{runtime.stream_metrics_port}/metrics",
                  env={"GLOBALMART_STREAM_METRICS_PORT": str(runtime.stream_metrics_port)}),
        Component(
            "dagster",
            # the Dagster project of pyproject.toml's [tool.dg], in this interpreter's venv
            [_bin("dg"), "dev", "--target-path", str(REPO_ROOT), "--use-active-venv",
             "-h", "127.0.0.1", "-p", str(runtime.dagster_port)],
            f"http://127.0.0.1:{runtime.dagster_port}",
            port=runtime.dagster_port, port_variable="GLOBALMART_DAGSTER_PORT",
            health_url=f"http://127.0.0.1:{runtime.dagster_port}/server_info",
            env={"DAGSTER_HOME": str(dagster_home), "VIRTUAL_ENV": sys.prefix,
                 **_dagster_storage_env(settings.db_url)},
        ),
        Component(
            "api",
            [_bin("globalmart"), "api", "--host", "127.0.0.1", "--port", str(runtime.api_port)],
            f"http://127.0.0.1:{runtime.api_port}/docs  (dashboard: /dashboard)",
            port=runtime.api_port, port_variable="GLOBALMART_API_PORT",
            health_url=f"http://127.0.0.1:{runtime.api_port}/health",
            env={"GLOBALMART_API_DAGSTER_DATABASE_URL": dagster_url},
        ),
    ]
    return [c for c in wanted if c.name not in without]


def _prepare_dagster_home(dagster_home: Path) -> None:
    """Dagster reads its instance config from $DAGSTER_HOME/dagster.yaml."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")


def _session_api_key(db_url: str) -> str:
    """A fresh API key for this run's dashboard link; the previous run's key is revoked."""
    from globalmart.keys import ApiKeyError, create_key, revoke_key

    with contextlib.suppress(ApiKeyError):
        revoke_key(db_url, _UP_KEY_NAME)
    return create_key(db_url, _UP_KEY_NAME)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
            return bool(200 <= response.status < 300)
    except OSError:
        return False


class Platform:
    """What ``globalmart up`` started, so it can stop it in reverse order."""

    def __init__(self, settings: PlatformSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime
        self.home = settings.home.resolve()
        self.logs = self.home / "logs"
        self.stop_requested = threading.Event()
        self.output_closed = False
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.rows: list[tuple[str, str, str]] = []
        self.dashboard_url: str | None = None

    def say(self, text: str, err: bool = False) -> None:
        """Print a status line; a closed terminal or pipe stops the platform instead of
        crashing it."""
        if self.output_closed:
            return
        try:
            click.echo(text, err=err)
        except (BrokenPipeError, OSError):
            self.output_closed = True
            self.stop_requested.set()

    def start_services(self) -> None:
        stop_leftovers(self.home, self.say)
        if self.settings.uses_embedded_postgres:
            pg = EmbeddedPostgres(self.home / "postgres", self.settings.embedded_pg_port, self.logs)
            if pg.running():
                self.say("stopping PostgreSQL, left running by an earlier `globalmart up` "
                         "that did not stop cleanly ...")
                pg.stop()
            pg.start()
            self._stops.append(("postgres", pg.stop))
            db.ensure_database(self.settings.db_url)
            self.rows.append(("postgres", "embedded", db.redact(self.settings.db_url)))
        else:
            self.rows.append(("postgres", "external", db.redact(self.settings.db_url)))
        applied = db.upgrade(self.settings.db_url)
        self.say(f"schema: {len(applied)} migration(s) applied, up to date")

        if self.settings.uses_embedded_kafka:
            broker = EmbeddedBroker(
                self.settings.embedded_kafka_port, self.home / "kafka", self.logs,
                controller_port=self.settings.embedded_kafka_controller_port,
                retention_hours=self.settings.embedded_kafka_retention_hours,
                retention_bytes=self.settings.embedded_kafka_retention_bytes)
            self.say("starting kafka ...")
            broker.start()
            assert broker.pid is not None
            record(self.home, "kafka", broker.pid)

            def stop_broker() -> None:
                broker.stop()
                forget(self.home, "kafka")

            self._stops.append(("kafka", stop_broker))
            self.rows.append(("kafka", "embedded (Apache Kafka, KRaft)",
                              f"{broker.bootstrap_servers}  log: {broker.data_dir}"))
        else:
            self.rows.append(("kafka", "external", self.settings.bootstrap_servers))
        created = ensure_topics(self.settings.bootstrap_servers, ALL_TOPICS)
        if created:
            self.say(f"topics created: {', '.join(created)}")

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "GLOBALMART_HOME": str(self.home),
            "GLOBALMART_DATABASE_URL": self.settings.db_url,
            "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "GLOBALMART_LAKE_PATH": self.settings.lake,
            "GLOBALMART_REDIS_URL": self.settings.redis_url,
            FORMAT_VARIABLE: "json",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def start_component(self, component: Component) -> None:
        if component.port is not None and not port_is_free(component.port):
            raise PortInUseError(component.port, component.port_variable, component.name)
        if component.name == "dagster":
            _prepare_dagster_home(Path(component.env["DAGSTER_HOME"]))
            db.ensure_database(dagster_database_url(self.settings.db_url))
        self._spawn(component, component.argv)
        self._stops.append((component.name, lambda: self._stop_component(component)))
        self._wait_healthy(component)
        self.rows.append((component.name, component.address, f"log: {component.log_path}"))
        if component.name == "api":
            key = _session_api_key(self.settings.db_url)
            self.dashboard_url = f"http://127.0.0.1:{self.runtime.api_port}/dashboard?key={key}"

    def _spawn(self, component: Component, argv: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        component.log_path = self.logs / f"{component.name}.log"
        with open(component.log_path, "ab") as log:
            component.process = subprocess.Popen(  # noqa: PLW1509 - preexec_fn is async-safe
                argv, env={**self.child_env(), **component.env}, cwd=REPO_ROOT,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        record(self.home, component.name, component.process.pid)

    def _stop_component(self, component: Component) -> None:
        _stop_process(component)
        forget(self.home, component.name)

    def _wait_healthy(self, component: Component) -> None:
        assert component.process is not None
        deadline = time.monotonic() + _HEALTH_TIMEOUT_S
        self.say(f"starting {component.name} ...")
        while not self.stop_requested.is_set():
            if component.process.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited with {component.process.returncode} while starting; "
                    f"see {component.log_path}"
                )
            if component.health_url is None or _healthy(component.health_url):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{component.name} was not healthy within {_HEALTH_TIMEOUT_S:.0f} s; "
                    f"see {component.log_path}"
                )
            self.stop_requested.wait(0.5)

    def print_table(self) -> None:
        name_width = max(len(name) for name, _, _ in self.rows)
        where_width = max(len(where) for _, where, _ in self.rows)
        self.say("")
        self.say("GlobalMart is up. Ctrl-C stops everything.")
        for name, where, detail in self.rows:
            self.say(f"  {name:<{name_width}}  {where:<{where_width}}  {detail}")
        if self.dashboard_url:
            self.say(f"\nWeb dashboard (its API key is valid until the next `up`):\n"
                     f"  {self.dashboard_url}")
        self.say("")

    def watch(self, components: list[Component]) -> int:
        """Print ingestion rates until a stop is requested; restart a component that exits,
        with back-off; return 1 on a crash loop."""
        previous = _topic_ends(self.settings.bootstrap_servers)
        last = time.monotonic()
        while not self.stop_requested.wait(_WATCH_TICK_S):
            now = time.monotonic()
            for component in components:
                if not self._supervise(component, now):
                    return 1
            if now - last >= self.runtime.status_interval_s:
                current = _topic_ends(self.settings.bootstrap_servers)
                self.say(_rates_line(previous, current, now - last))
                previous, last = current, now
        return 0

    def _supervise(self, component: Component, now: float) -> bool:
        """Restart ``component`` when it exited and its back-off has passed; False on a crash
        loop (it is then not restarted)."""
        assert component.process is not None
        if component.restart_at is not None:
            if now >= component.restart_at:
                component.restart_at = None
                self._spawn(component, component.restart_argv or component.argv)
                self.say(f"{component.name} restarted (pid {component.process.pid})")
            return True
        if component.process.poll() is None:
            return True
        code = component.process.returncode
        window = self.runtime.restart_window_minutes * 60
        component.restarts = [t for t in component.restarts if now - t < window]
        if len(component.restarts) >= self.runtime.restart_limit:
            self.say(f"{component.name} exited with {code} after {len(component.restarts)} "
                     f"restarts within {self.runtime.restart_window_minutes:g} min: a crash "
                     f"loop; see {component.log_path}. Stopping the platform.", err=True)
            return False
        delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** len(component.restarts))
        component.restarts.append(now)
        component.restart_at = now + delay
        self.say(f"{component.name} exited with {code}; restarting in {delay:g} s (restart "
                 f"{len(component.restarts)} of {self.runtime.restart_limit} allowed within "
                 f"{self.runtime.restart_window_minutes:g} min); see {component.log_path}",
                 err=True)
        return True

    def stop_all(self) -> None:
        for name, stop in reversed(self._stops):
            self.say(f"stopping {name} ...")
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                self.say(f"  {name} did not stop cleanly: {exc}", err=True)
        self._stops.clear()


def _topic_ends(bootstrap_servers: str) -> dict[str, int]:
    """Records written per topic; empty while the broker does not answer."""
    try:
        return topic_end_offsets(bootstrap_servers, ALL_TOPICS, timeout=5)
    except KafkaException:
        return {}


def _rates_line(previous: dict[str, int], current: dict[str, int], seconds: float) -> str:
    parts = []
    for topic in (*INPUT_TOPICS, "alerts", "dead_letter"):
        delta = max(0, current.get(topic, 0) - previous.get(topic, 0))
        parts.append(f"{topic} {delta / max(seconds, 1e-9):,.0f}/s")
    total = sum(current.get(t, 0) for t in INPUT_TOPICS)
    return f"[{time.strftime('%H:%M:%S')}] ingest: " + ", ".join(parts) + f" | total {total:,}"


def _stop_process(component: Component) -> None:
    """SIGINT to the child's process group (it shuts down gracefully), then SIGKILL."""
    process = component.process
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        return
    # The leader is gone; make sure nothing it spawned outlives it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def is_first_run(home: Path) -> bool:
    """An empty (or missing) GLOBALMART_HOME: nothing has ever run there."""
    return not home.exists() or not any(home.iterdir())


def run_platform(settings: PlatformSettings, rate: float, without: set[str],
                 history: bool = True) -> int:
    """Run the platform until Ctrl-C; returns the process exit code. ``history``: on an
    empty home, emit ``RuntimeSettings.history_days`` past days first."""
    runtime = RuntimeSettings()
    platform = Platform(settings, runtime)

    def request_stop(signum: int, _frame: object) -> None:
        if not platform.stop_requested.is_set():
            platform.say(f"\n{signal.Signals(signum).name} received: shutting down ...")
        platform.stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    history_days = runtime.history_days if history and is_first_run(platform.home) else 0
    if history_days:
        platform.say(f"first start on {platform.home}: the generator emits {history_days} past "
                     f"days first (history rate {runtime.history_rate:g}, `up --no-history` "
                     "skips it); the Dagster sensor builds each day once the stream has "
                     "landed it")
    components = _components(settings, runtime, rate, without, history_days)
    code = 0
    try:
        platform.start_services()
        for component in components:
            if platform.stop_requested.is_set():
                break
            platform.start_component(component)
        if not platform.stop_requested.is_set():
            platform.print_table()
            code = platform.watch(components)
    except (PortInUseError, RuntimeError, TimeoutError, ConnectionError) as exc:
        platform.say(f"error: {exc}", err=True)
        code = 1
    finally:
        platform.stop_all()
    platform.say("stopped." if code == 0 else "stopped after an error.")
    return code
