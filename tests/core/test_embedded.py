"""The embedded servers: start, answer, stop, and refuse a taken port clearly."""

from __future__ import annotations

import socket

import psycopg
import pytest

from globalmart.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    PortInUseError,
    free_port,
    port_is_free,
)
from globalmart.kafka import ensure_topics


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
