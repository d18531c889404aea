"""Alert notifiers: where an alert goes besides the ``alerts`` table and topic.

The default logs each alert; with ``GLOBALMART_STREAM_ALERT_WEBHOOK_URL`` set, alerts are also
POSTed there as a JSON array. A notifier never fails a batch: the alert is already committed,
a notification that cannot be delivered is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from globalmart.contracts import Alert

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Something told about alerts after they are committed."""

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Deliver ``alerts`` (best effort)."""


class LogNotifier:
    """Logs every alert (critical ones as errors, the rest as warnings)."""

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Log each alert."""
        for alert in alerts:
            level = logging.ERROR if alert.severity == "critical" else logging.WARNING
            log.log(level, "ALERT %s [%s] %s: %s", alert.alert_type, alert.severity,
                    alert.entity_id, alert.message)


class WebhookNotifier:
    """Logs, then POSTs the alerts as a JSON array to a URL."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._log = LogNotifier()

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Log the alerts and POST them; a failed POST is logged, not raised."""
        import httpx

        self._log.notify(alerts)
        if not alerts:
            return
        body = [alert.model_dump(mode="json") for alert in alerts]
        try:
            httpx.post(self.url, json=body, timeout=self.timeout).raise_for_status()
        except httpx.HTTPError as exc:
            log.error("could not deliver %d alerts to the webhook: %s", len(alerts), exc)


def build_notifier(webhook_url: str | None) -> Notifier:
    """The webhook notifier when a URL is set, else the log notifier."""
    return WebhookNotifier(webhook_url) if webhook_url else LogNotifier()
