"""Kafka administration shared by the generator, the streaming job and the sensors."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition
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


def read_to_end(bootstrap_servers: str, topics: Iterable[str], timeout: float = 60.0
                ) -> list[bytes]:
    """The values of every message of ``topics``, from the beginning up to the end offsets of
    the moment of the call (each partition in order; no consumer group offsets committed): what
    the benchmarks and tests compute their truth from. Raises ``TimeoutError`` when the
    partitions cannot be read to those ends within ``timeout`` seconds."""
    ends = {key: end for key, end in end_offsets(bootstrap_servers, topics).items() if end}
    consumer = Consumer({"bootstrap.servers": bootstrap_servers,
                         "group.id": f"globalmart-read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False}, logger=_DebugLog())
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(pending)} to their end offsets "
                                   f"within {timeout:g} s")
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is not None:
                    raise KafkaException(message.error())
                key = (str(message.topic()), int(message.partition() or 0))
                offset = int(message.offset() or 0)
                if offset < ends[key]:
                    values.append(message.value() or b"")
                if offset + 1 >= ends[key]:
                    pending.discard(key)
    finally:
        consumer.close()
    return values
