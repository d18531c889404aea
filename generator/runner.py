"""Running the generator: the one loop that ``globalmart generate``, ``globalmart up`` (through
the command) and the throughput benchmark share.

History windows are produced as fast as the producer takes them; live windows are paced on the
wall clock (a window leaves when its end has passed, so events are at most 0.2 s old when sent).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaException

from generator.catalog import Catalog
from generator.clock import DAY_US, Params, iso_time, to_us
from generator.config import GeneratorSettings
from generator.encoding import TOPICS
from generator.producer import EventProducer
from generator.simulate import Simulator
from generator.sources import SourceWriter
from globalmart.contracts import ALL_TOPICS
from globalmart.kafka import ensure_topics
from globalmart.settings import PlatformSettings

log = logging.getLogger(__name__)

SOURCE_SUBMIT_INTERVAL_S = 0.5
FLUSH_TIMEOUT_S = 60.0
STOP_FLUSH_TIMEOUT_S = 15.0  # after Ctrl-C / SIGTERM: do not hang on an unreachable broker


class GeneratorError(RuntimeError):
    """The generator cannot run or could not finish its work (message says why)."""


@dataclass
class Summary:
    """What a run produced."""

    events: dict[str, int]
    malformed: int
    resends: int
    anomalies: dict[str, int]
    delivered: int
    failed: int
    undelivered: int  # still queued when the final flush timed out
    first_error: str | None
    customers: int
    products: int
    elapsed: float
    dropped_purchases: int = 0
    unsent: int = 0  # never handed to Kafka (stopped while its queue was full)
    stopped: bool = False  # by a stop request (Ctrl-C, SIGTERM)

    @property
    def valid(self) -> int:
        """Valid events produced (malformed messages and resends excluded)."""
        return sum(self.events.values())

    @property
    def rate(self) -> float:
        """Valid events per second over the run."""
        return self.valid / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """The one-line summary printed at the end."""
        topics = ", ".join(f"{t} {n:,}" for t, n in self.events.items())
        anomalies = ", ".join(f"{t} {n:,}" for t, n in self.anomalies.items())
        error = f" (first error: {self.first_error})" if self.first_error else ""
        how = "stopped on request" if self.stopped else "finished"
        return (
            f"generator summary: {how} after {self.elapsed:.1f} s; {self.valid:,} events "
            f"({self.rate:,.0f} events/s): {topics}; malformed {self.malformed:,}, "
            f"resends {self.resends:,}; delivered {self.delivered:,}, failed {self.failed:,}"
            f"{error}, undelivered {self.undelivered:,}"
            + (f", unsent {self.unsent:,}" if self.unsent else "")
            + f"; anomalies recorded: {anomalies}; "
            f"new source rows: customers {self.customers:,}, products {self.products:,}"
        )


def simulation_params(settings: GeneratorSettings, now: datetime) -> Params:
    """Where the simulated clock starts and where the history ends, from the settings."""
    now_us = to_us(now)
    if settings.history_days:
        end_us = to_us(settings.history_end_or(now))
        start_us = end_us - end_us % DAY_US - settings.history_days * DAY_US
    else:
        start_us = end_us = now_us
    return Params(
        start_us=start_us,
        history_end_us=end_us,
        rate=settings.rate,
        history_rate=settings.history_rate,
        anomaly_rate=settings.anomaly_rate,
        malformed_rate=settings.malformed_rate,
        resend_rate=settings.resend_rate,
    )


def build_simulator(settings: GeneratorSettings, now: datetime,
                    catalog: Catalog | None = None) -> Simulator:
    """The simulation the settings describe (pure: no Kafka, no database)."""
    return Simulator(catalog or Catalog(settings.products), settings.users,
                     simulation_params(settings, now), settings.seed)


class _Progress:
    """Progress lines every few seconds: events/s per topic, deliveries, errors."""

    def __init__(self, echo: Callable[[str], None], interval: float) -> None:
        self.echo = echo
        self.interval = interval
        self._last = time.monotonic()
        self._counts = dict.fromkeys(TOPICS, 0)

    def maybe_report(self, sim: Simulator, producer: EventProducer, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._last
        if elapsed < self.interval and not force:
            return
        counts = dict(sim.counts.events)
        rates = {t: (counts[t] - self._counts[t]) / elapsed for t in TOPICS}
        self._counts, self._last = counts, now
        per_topic = ", ".join(f"{t} {r:,.0f}/s" for t, r in rates.items())
        phase = "history" if sim.in_history else "live"
        self.echo(
            f"generator: {sum(rates.values()):,.0f} events/s ({per_topic}) | "
            f"delivered {producer.delivered:,}, failed {sum(producer.failed.values()):,}, "
            f"in flight {producer.in_flight:,} | malformed {sim.counts.malformed:,}, "
            f"resends {sim.counts.resends:,} | anomalies "
            f"{sum(sim.counts.anomalies.values()):,} | {phase} at {iso_time(sim.clock)}"
        )


def run(settings: GeneratorSettings, *, bootstrap_servers: str | None = None,
        database_url: str | None = None, stop: threading.Event | None = None,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time) -> Summary:
    """Produce events into Kafka as the settings say, until the duration, ``max_events`` or
    ``stop`` ends the run; flush, write the last source rows and return the summary.

    The endpoints default to the platform's. Creates the topics when missing. Raises
    :class:`GeneratorError` when Kafka or PostgreSQL cannot be used.
    """
    stop = stop or threading.Event()
    echo = echo or log.info
    platform = PlatformSettings()
    servers = bootstrap_servers or platform.bootstrap_servers
    try:
        ensure_topics(servers, ALL_TOPICS)
    except KafkaException as exc:
        raise GeneratorError(f"cannot create the topics on Kafka at {servers}: {exc}") from exc
    catalog = Catalog(settings.products)
    writer = (SourceWriter(database_url or platform.db_url, catalog)
              if settings.write_sources else None)
    if writer is not None:
        try:
            writer.start()
        except (ConnectionError, RuntimeError) as exc:
            raise GeneratorError(str(exc)) from exc
    sim = build_simulator(settings, datetime.fromtimestamp(clock(), UTC), catalog)
    gc.freeze()  # the world lives as long as the run: keep it out of the collector's scans
    producer = EventProducer(servers, compression=settings.compression,
                             linger_ms=settings.linger_ms)
    progress = _Progress(echo, settings.progress_interval)
    history_end = sim.params.history_end_us
    totals = {"customers": 0, "products": 0}
    live_end_us: int | None = None
    last_submit = time.monotonic()

    def submit() -> None:
        records = sim.drain()
        totals["customers"] += len(records.new_customers)
        totals["products"] += len(records.new_products)
        if writer is not None:
            writer.submit(records)

    started = time.monotonic()
    try:
        while not stop.is_set():
            if not sim.in_history:
                if settings.duration == 0:
                    break
                if live_end_us is None and settings.duration is not None:
                    wall_us = int(clock() * 1e6)
                    live_end_us = max(sim.clock, wall_us) + int(settings.duration * 1e6)
                if live_end_us is not None and sim.clock >= live_end_us:
                    break
            if settings.max_events is not None and sim.counts.valid >= settings.max_events:
                break
            end_us, messages = sim.step(limit=settings.max_events)
            if end_us > history_end:
                _wait_until(end_us, producer, stop, clock)
            producer.send(messages, stop)
            if time.monotonic() - last_submit >= SOURCE_SUBMIT_INTERVAL_S:
                submit()
                last_submit = time.monotonic()
                if writer is not None and writer.error is not None:
                    raise GeneratorError(f"writing the source tables failed: {writer.error}")
            progress.maybe_report(sim, producer)
    finally:
        submit()
        undelivered = producer.flush(STOP_FLUSH_TIMEOUT_S if stop.is_set() else FLUSH_TIMEOUT_S)
        elapsed = time.monotonic() - started
        if writer is not None:
            writer.close()
    if writer is not None and writer.error is not None:
        raise GeneratorError(f"writing the source tables failed: {writer.error}")
    progress.maybe_report(sim, producer, force=True)
    counts = sim.counts
    return Summary(
        events=dict(counts.events),
        malformed=counts.malformed,
        resends=counts.resends,
        anomalies=dict(counts.anomalies),
        delivered=producer.delivered,
        failed=sum(producer.failed.values()),
        undelivered=undelivered,
        first_error=producer.first_error,
        customers=totals["customers"],
        products=totals["products"],
        elapsed=elapsed,
        dropped_purchases=counts.dropped_purchases,
        unsent=counts.valid + counts.malformed + counts.resends - producer.sent,
        stopped=stop.is_set(),
    )


def _wait_until(t_us: int, producer: EventProducer, stop: threading.Event,
                clock: Callable[[], float]) -> None:
    """Pace live windows: serve deliveries until the wall clock reaches ``t_us``."""
    while not stop.is_set():
        remaining = t_us / 1e6 - clock()
        if remaining <= 0:
            return
        producer.poll(min(remaining, 0.1))

