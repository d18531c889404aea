"""The embedded servers: start, answer, stop, and refuse a taken port clearly."""

from __future__ import annotations

import socket
import time

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from globalmart.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    PortInUseError,
    free_port,
    port_is_free,
)
from globalmart.kafka import end_offsets, ensure_topics


def test_embedded_postgres_keeps_its_data_across_restarts(tmp_path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), tmp_path / "logs")
    server.start()
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        server.stop()
        assert port_is_free(server.port)
        server.start()
        with psycopg.connect(server.url("postgres")) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    finally:
        server.stop()


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-all",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(1000, timeout=0.5)
                       if m.error() is None]
        return values
    finally:
        consumer.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_embedded_broker_keeps_its_log_across_a_restart_and_a_kill(tmp_path, how: str) -> None:
    server = EmbeddedBroker(free_port(), tmp_path / "kafka")
    server.start()
    try:
        ensure_topics(server.bootstrap_servers, ["kept"])
        producer = Producer({"bootstrap.servers": server.bootstrap_servers, "acks": "all"})
        sent = [f"event-{n}".encode() for n in range(5000)]
        for value in sent:
            producer.produce("kept", value)
        assert producer.flush(30) == 0
        server.stop() if how == "stop" else server.kill()
        assert port_is_free(server.port)
        server.start()  # the same data directory: formatted once, not again
        assert sum(end_offsets(server.bootstrap_servers, ["kept"]).values()) == len(sent)
        assert sorted(_read_all(server.bootstrap_servers, "kept", len(sent))) == sorted(sent)
    finally:
        server.stop()


def test_broker_topics_are_created_once(broker) -> None:
    assert ensure_topics(broker.bootstrap_servers, ["a", "b"]) == ["a", "b"]
    assert ensure_topics(broker.bootstrap_servers, ["a", "b"]) == []


@pytest.mark.parametrize(
    "variable", ["GLOBALMART_EMBEDDED_KAFKA_PORT", "GLOBALMART_EMBEDDED_PG_PORT"]
)
def test_a_taken_port_names_the_port_and_the_variable(tmp_path, variable: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = (EmbeddedBroker(port, tmp_path) if "KAFKA" in variable
                  else EmbeddedPostgres(tmp_path / "pg", port, tmp_path))
        with pytest.raises(PortInUseError, match=rf"port {port}.*{variable}"):
            server.start()
