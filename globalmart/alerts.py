"""Alerts, wherever they are raised (the stream's anomalies and stock transitions, Dagster's
failed runs and checks): ids derived from what raised them, so raising one again changes
nothing; rows of ``public.alerts`` and messages on the ``alerts`` topic (key: the entity)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer

from globalmart.contracts import ALERTS_TOPIC, Alert

ALERT_NAMESPACE = uuid.UUID("6f1d6a52-6c0b-4b8e-9a57-2f0c1c3e8d11")


def make_alert(alert_type: str, severity: str, entity_id: str, message: str,
               key: str) -> Alert:
    """An alert whose id is derived from ``key``."""
    return Alert(alert_id=uuid.uuid5(ALERT_NAMESPACE, key), alert_type=alert_type,
                 severity=severity, entity_id=entity_id, message=message,  # type: ignore[arg-type]
                 created_at=datetime.now(UTC))


def insert_alerts(conn: psycopg.Connection, alerts: Sequence[Alert]) -> None:
    """Insert alerts (idempotent by alert_id)."""
    if alerts:
        conn.cursor().executemany(
            "INSERT INTO public.alerts (alert_id, alert_type, severity, entity_id, message, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (alert_id) DO NOTHING",
            [(a.alert_id, a.alert_type, a.severity, a.entity_id, a.message, a.created_at)
             for a in alerts])


def alert_messages(alerts: Sequence[Alert]) -> list[tuple[str, str]]:
    """The ``alerts`` topic's messages of ``alerts``: (key, JSON value)."""
    return [(a.entity_id, a.model_dump_json()) for a in alerts]


def produce_alerts(bootstrap_servers: str, alerts: Sequence[Alert], timeout: float = 10.0
                   ) -> None:
    """Produce alerts to the ``alerts`` topic with a producer of their own, and wait until the
    broker has them (raises when it has not within ``timeout`` seconds). For the processes that
    raise a few alerts at a time; the stream sends through its batch's producer."""
    if not alerts:
        return
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for key, value in alert_messages(alerts):
        producer.produce(ALERTS_TOPIC, key=key, value=value, on_delivery=delivered)
    left = producer.flush(timeout)
    if left or failures:
        raise RuntimeError(f"{left or len(failures)} of {len(alerts)} alerts not delivered to "
                           f"{ALERTS_TOPIC!r} at {bootstrap_servers}: {failures[:1]}")
