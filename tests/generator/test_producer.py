"""Delivery accounting of the generator's producer."""

from __future__ import annotations

import logging

import pytest

from generator.encoding import TOPICS
from generator.producer import EventProducer
from globalmart.embedded import free_port
from globalmart.kafka import ensure_topics
from tests.generator.conftest import consume


def test_deliveries_are_counted(broker) -> None:
    ensure_topics(broker.bootstrap_servers, list(TOPICS))
    producer = EventProducer(broker.bootstrap_servers)
    messages = [("cart_events", f"U{i % 7:08d}".encode(), f'{{"n":{i}}}'.encode())
                for i in range(5_000)]
    assert producer.send(messages) == 5_000
    assert producer.flush(30) == 0
    assert producer.delivered == 5_000 and not producer.failed
    received = consume(broker.bootstrap_servers, ["cart_events"], 5_000)
    assert sorted(v for *_, v in received) == sorted(v for *_, v in messages)


def test_delivery_failures_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens there: every message times out, and each failure is counted.
    producer = EventProducer(f"127.0.0.1:{free_port()}", message_timeout_ms=500)
    with caplog.at_level(logging.ERROR, logger="generator.producer"):
        producer.send([("transactions", b"U00000001", b"{}")] * 10)
        assert producer.flush(20) == 0
    assert producer.delivered == 0
    assert producer.failed == {"transactions": 10}
    assert producer.first_error is not None and "transactions" in producer.first_error
    assert "delivery failed" in caplog.text
