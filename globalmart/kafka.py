"""Kafka administration shared by the generator, the streaming job and the sensors."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

INPUT_PARTITIONS = 3
RETENTION_MS = 7 * 24 * 3600 * 1000


def ensure_topics(bootstrap_servers: str, topics: tuple[str, ...] | list[str],
                  partitions: int = INPUT_PARTITIONS, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (3 partitions, 7-day retention); return those
    created. Existing topics are left as they are."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    new = [NewTopic(t, partitions, 1, config={"retention.ms": str(RETENTION_MS)}) for t in missing]
    futures = admin.create_topics(new, request_timeout=timeout)
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(topic)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    del admin  # the futures are resolved; the client may go now
    return created
