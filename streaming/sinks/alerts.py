"""Alerts (anomalies and stock transitions): ids derived from what raised them, so a replayed
batch raises the same ones; inserted in the batch's transaction (idempotent by id) and
produced to the ``alerts`` topic before it commits. The notifier is called once the batch
has committed (:class:`streaming.sinks.batch.RealtimeSink`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg

from globalmart.contracts import ALERTS_TOPIC, Alert
from streaming.sinks.topics import TopicWriter

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


def publish_alerts(writer: TopicWriter, alerts: Sequence[Alert]) -> None:
    """Produce alerts to the ``alerts`` topic (key: the entity)."""
    writer.send_all(ALERTS_TOPIC, ((a.entity_id, a.model_dump_json()) for a in alerts))
