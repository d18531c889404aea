"""The stream's alerts (anomalies and stock transitions, made with
:func:`globalmart.alerts.make_alert`): inserted in the batch's transaction (idempotent by id)
and produced to the ``alerts`` topic before it commits. The notifier is called once the batch
has committed (:class:`streaming.sinks.batch.RealtimeSink`)."""

from __future__ import annotations

from collections.abc import Sequence

from globalmart.alerts import alert_messages
from globalmart.contracts import ALERTS_TOPIC, Alert
from streaming.sinks.topics import TopicWriter


def publish_alerts(writer: TopicWriter, alerts: Sequence[Alert]) -> None:
    """Produce alerts to the ``alerts`` topic through the batch's writer (key: the entity)."""
    writer.send_all(ALERTS_TOPIC, alert_messages(alerts))
