"""Helpers of the generator tests: pure simulation runs and a Kafka reader."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from generator.catalog import Catalog
from generator.config import GeneratorSettings
from generator.encoding import Message
from generator.runner import build_simulator
from generator.simulate import Records, Simulator
from globalmart.kafka import INPUT_PARTITIONS

HISTORY_END = datetime(2026, 5, 10, 6, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The full-size catalogue (250,000 products), built once."""
    return Catalog(250_000)


@dataclass
class Run:
    """The outcome of a pure simulation run."""

    sim: Simulator
    messages: list[Message] = field(default_factory=list)
    records: Records = field(default_factory=Records)


def simulate(catalog: Catalog, events: int, **settings: object) -> Run:
    """Run the simulation (no Kafka, no database) until ``events`` valid events; history mode
    ending at :data:`HISTORY_END` unless the settings say otherwise."""
    options: dict[str, object] = {"history_days": 1, "history_end": HISTORY_END,
                                  "max_events": events, "products": catalog.size}
    options.update(settings)
    config = GeneratorSettings(**options)  # type: ignore[arg-type]
    sim = build_simulator(config, HISTORY_END, catalog)
    run = Run(sim)
    while sim.counts.valid < events and (sim.in_history or config.duration != 0):
        _, messages = sim.step(limit=events)
        run.messages += messages
        drained = sim.drain()
        run.records.new_customers += drained.new_customers
        run.records.customer_moves += drained.customer_moves
        run.records.new_products += drained.new_products
        run.records.anomalies += drained.anomalies
    return run


def consume(bootstrap_servers: str, topics: list[str], expected: int,
            timeout: float = 60.0) -> list[tuple[str, int, bytes | None, bytes]]:
    """Read every partition of ``topics`` from the start until ``expected`` messages arrived
    (or the deadline passes), then check that nothing more comes; return
    (topic, partition, key, value) in partition order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"generator-test-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t in topics for p in range(INPUT_PARTITIONS)])
    received: list[tuple[str, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                if message.error() is None:
                    received.append((message.topic(), message.partition(), message.key(),
                                     message.value()))
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            if message.error() is None:
                received.append((message.topic(), message.partition(), message.key(),
                                 message.value()))
    finally:
        consumer.close()
    return received
