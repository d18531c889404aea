"""Kafka administration shared by the generator, the streaming job and the sensors."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

INPUT_PARTITIONS = 3
RETENTION_MS = 7 * 24 * 3600 * 1000


class _DebugLog:
    """The ``logger`` of short-lived admin clients: librdkafka's own lines (connection refused
    while a broker starts or stops...) go to ``globalmart.kafka.librdkafka`` at DEBUG; failures
    reach the caller as exceptions."""

    _log = logging.getLogger("globalmart.kafka.librdkafka")

    def log(self, _level: int, msg: str, *args: object) -> None:
        """Called by the client while it serves its callbacks."""
        self._log.debug(msg, *args)


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An admin client whose librdkafka lines go to DEBUG."""
    return AdminClient({"bootstrap.servers": bootstrap_servers}, logger=_DebugLog())


def ensure_topics(bootstrap_servers: str, topics: tuple[str, ...] | list[str],
                  partitions: int = INPUT_PARTITIONS, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (3 partitions, 7-day retention); return those
    created. Existing topics are left as they are."""
    admin = admin_client(bootstrap_servers)
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


TopicPartitionKey = tuple[str, int]
"""(topic, partition) — the key of every per-partition offset map."""


def end_offsets(bootstrap_servers: str, topics: Iterable[str], timeout: float = 10.0
                ) -> dict[TopicPartitionKey, int]:
    """The log end offset (the offset the next record will get) of every partition of those
    ``topics`` that exist; missing topics are absent. Raises ``KafkaException`` when the broker
    does not answer within ``timeout``."""
    admin = admin_client(bootstrap_servers)
    metadata = admin.list_topics(timeout=timeout)
    request = {TopicPartition(topic, partition): OffsetSpec.latest()
               for topic in topics if topic in metadata.topics
               and metadata.topics[topic].error is None
               for partition in metadata.topics[topic].partitions}
    if not request:
        return {}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): future.result(timeout=timeout).offset
            for tp, future in futures.items()}


def topic_end_offsets(bootstrap_servers: str, topics: Iterable[str], timeout: float = 10.0
                      ) -> dict[str, int]:
    """Σ over partitions of the log end offset per topic (records ever written; absent topics
    are absent)."""
    totals: dict[str, int] = {}
    for (topic, _partition), end in end_offsets(bootstrap_servers, topics, timeout).items():
        totals[topic] = totals.get(topic, 0) + end
    return totals

