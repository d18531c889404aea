"""Kafka administration shared by the generator, the streaming job and the sensors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

log = logging.getLogger(__name__)

INPUT_PARTITIONS = 3
RETENTION_MS = 7 * 24 * 3600 * 1000



class LibrdkafkaLog:
    """The ``logger`` of a confluent-kafka client: librdkafka's own lines (connection drops
    while a broker restarts, retries...) go to the ``globalmart.kafka.librdkafka`` logger at
    DEBUG, as the clients report real failures through exceptions and message errors.
    ``on_connection_failure`` is called for every connection failure line (facility FAIL)."""

    def __init__(self, on_connection_failure: Callable[[], None] | None = None) -> None:
        self._log = logging.getLogger("globalmart.kafka.librdkafka")
        self._on_failure = on_connection_failure

    def log(self, level: int, msg: str, *args: object) -> None:
        """Called by the client while it serves its callbacks."""
        if self._on_failure is not None and args and args[0] == "FAIL":
            self._on_failure()
        self._log.debug(msg, *args)


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


# --- Log bounds: where each partition's log starts and (truly) ends ---------------------------
#
# A broker's reported high watermark (ListOffsets "latest") is the offset after the last record
# on Apache Kafka, but Tansu reports the base offset of the last record batch + 1, which can be
# far below the true end when that batch holds many records. The fetch path is exact on both:
# reading from (reported - 1) returns the whole last batch and then a "partition EOF" event that
# carries the true end. ``LogProbe`` does that, and remembers per partition the reported value
# it last resolved, so an idle partition costs no fetch at all.

TopicPartitionKey = tuple[str, int]
"""(topic, partition) — the key of every per-partition offset map in this module."""


# How long to keep reading logs that are still being written to, once each has shown records
# past the end the broker reported, before settling for the highest offset seen.
GROWING_LOG_WAIT = 0.2


class LogProbe:
    """Finds the partitions of topics and the bounds of their logs (log start offset and true
    log end offset). Keep one per long-lived reader and ``close()`` it; it holds a consumer that
    never joins a group or commits anything, and an admin client.

    ``config`` is extra librdkafka configuration (security settings, for instance).
    Broker failures raise ``confluent_kafka.KafkaException`` from ``topic_partitions``; a
    partition that disappears between calls is left out of the results."""

    def __init__(self, bootstrap_servers: str, config: dict[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        # Like Spark's native Kafka source (and unlike librdkafka's default), read everything
        # up to the high watermark unless the caller asks for read_committed.
        base: dict[str, str | int | float | bool] = {"isolation.level": "read_uncommitted",
                                                     "bootstrap.servers": bootstrap_servers,
                                                     **(config or {})}
        self._isolation = (IsolationLevel.READ_COMMITTED
                           if base["isolation.level"] == "read_committed"
                           else IsolationLevel.READ_UNCOMMITTED)
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self._admin = AdminClient({k: v for k, v in base.items() if k != "isolation.level"},
                                  logger=LibrdkafkaLog())
        self._consumer = Consumer({
            **base,
            "group.id": "globalmart-log-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 10,
            "error_cb": self._connection_failed,
        }, logger=LibrdkafkaLog(self._connection_failed))
        # (topic, partition) -> (reported high watermark, true end resolved from it). Only
        # valid while the broker keeps its log: a connection failure (a restart of an
        # in-memory broker, which can bring back the same reported values over other data)
        # invalidates it.
        self._resolved: dict[TopicPartitionKey, tuple[int, int]] = {}
        # (topic, partition) -> the reported high watermark of the previous call
        self._reported: dict[TopicPartitionKey, int] = {}
        self._connection_lost = False

    def __enter__(self) -> LogProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the consumer (the admin client goes with the object)."""
        self._consumer.close()

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """Partition numbers of each of ``topics`` that exists on the broker; topics that do not
        exist (or that the broker reports an error for) are absent."""
        metadata = self._consumer.list_topics(timeout=self.timeout)
        found = {}
        for topic in topics:
            info = metadata.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                found[topic] = sorted(info.partitions)
        return found

    def partitions_of(self, topics: Iterable[str]) -> list[TopicPartitionKey]:
        """All (topic, partition) pairs of those ``topics`` that exist, sorted."""
        return [(t, p) for t, ps in sorted(self.topic_partitions(topics).items()) for p in ps]

    def start_offsets(self, partitions: Iterable[TopicPartitionKey]
                      ) -> dict[TopicPartitionKey, int]:
        """The log start offset (earliest offset still stored) of each partition."""
        return self._list_offsets(partitions, OffsetSpec.earliest())

    def reported_end_offsets(self, partitions: Iterable[TopicPartitionKey]
                             ) -> dict[TopicPartitionKey, int]:
        """The high watermark as the broker reports it (exact on Kafka, can lag on Tansu)."""
        return self._list_offsets(partitions, OffsetSpec.latest())

    def end_offsets(self, partitions: Iterable[TopicPartitionKey], exact: bool = True
                    ) -> dict[TopicPartitionKey, int]:
        """The true log end offset of each partition: the offset the next record will get.

        ``exact=False`` is for a caller that asks again and again (a stream's planner): a
        partition whose reported end moved since the previous call is being written to, and
        gets its reported end (exact on Kafka; on Tansu it misses at most the rest of the last
        record batch, which the next calls deliver) without the fetch that finds the true end.
        It is resolved exactly on the first call that finds its reported end unchanged, so the
        end of a log that stops growing is always found. Tansu's fetch costs time in proportion
        to the number of record batches in the partition, so this keeps a busy stream from
        slowing the broker down as its log grows."""
        partitions = list(partitions)
        self._consumer.poll(0)  # serves the client's log and error callbacks
        if self._connection_lost:
            self._resolved.clear()
            self._reported.clear()
            self._connection_lost = False
        reported = self.reported_end_offsets(partitions)
        ends: dict[TopicPartitionKey, int] = {}
        to_fetch: dict[TopicPartitionKey, int] = {}
        for key, high in reported.items():
            previous = self._resolved.get(key)
            if high <= 0:
                ends[key] = high
            elif previous is not None and previous[0] == high:
                ends[key] = previous[1]  # no batch was appended since we last resolved it
            elif not exact and high > self._reported.get(key, high):
                ends[key] = max(high, previous[1] if previous else 0)  # still being written
            else:
                to_fetch[key] = high
        fetched, resolved = self._fetch_ends(to_fetch)
        ends.update(fetched)
        for key in list(self._resolved):
            if key not in reported:
                del self._resolved[key]
        for key, high in to_fetch.items():
            if key in resolved:  # a lower bound of a growing log is asked again next time
                self._resolved[key] = (high, ends[key])
        self._reported = reported
        return ends

    def _connection_failed(self, *_: object) -> None:
        self._connection_lost = True

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Drop what is remembered about these partitions (after a broker lost them)."""
        for key in partitions:
            self._resolved.pop(key, None)
            self._reported.pop(key, None)

    def _list_offsets(self, partitions: Iterable[TopicPartitionKey], spec: OffsetSpec
                      ) -> dict[TopicPartitionKey, int]:
        request = {TopicPartition(t, p): spec for t, p in partitions}
        if not request:
            return {}
        futures = self._admin.list_offsets(request, isolation_level=self._isolation,
                                           request_timeout=self.timeout)
        result = {}
        for tp, future in futures.items():
            key = (tp.topic, tp.partition)
            try:
                result[key] = future.result(timeout=self.timeout).offset
            except KafkaException:
                # The admin client's metadata can be stale right after a topic was created or
                # a broker restarted; the consumer's was refreshed by topic_partitions().
                offset = self._watermark(key, latest=spec == OffsetSpec.latest())
                if offset is not None:
                    result[key] = offset
        return result

    def _watermark(self, key: TopicPartitionKey, latest: bool) -> int | None:
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(*key),
                                                             timeout=self.timeout)
        except KafkaException as exc:
            log.debug("no offsets for %s[%d]: %s", *key, exc)
            return None
        return high if latest else low

    def _fetch_ends(self, reported: dict[TopicPartitionKey, int]
                    ) -> tuple[dict[TopicPartitionKey, int], set[TopicPartitionKey]]:
        """Read each partition from (reported - 1) until its end-of-partition event, which
        carries the true end. Records seen bound the end from below, so a partition that does
        not answer in time still gets a safe (never too high) end. A log being written to can
        take seconds to answer: once every partition still open has shown records past its
        reported end, reading stops after ``GROWING_LOG_WAIT`` seconds and the rest is left to
        the next call. Returns the ends and the partitions whose end is exact."""
        ends = dict(reported)
        if not reported:
            return ends, set()
        self._consumer.assign([TopicPartition(t, p, high - 1) for (t, p), high in reported.items()])
        pending = set(reported)
        growing: set[TopicPartitionKey] = set()
        exact: set[TopicPartitionKey] = set()
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            while pending and time.monotonic() < deadline and not (
                    pending <= growing and time.monotonic() - started > GROWING_LOG_WAIT):
                for message in self._consumer.consume(10_000, timeout=0.005):
                    key = (message.topic(), message.partition())
                    if key not in pending:
                        continue
                    error, offset = message.error(), message.offset() or 0
                    if error is None:
                        ends[key] = max(ends[key], offset + 1)
                        if offset >= reported[key]:
                            growing.add(key)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        ends[key] = max(ends[key], offset)
                        pending.discard(key)
                        exact.add(key)
                    else:
                        log.warning("reading the end of %s[%d] failed: %s", *key, error)
                        pending.discard(key)
        finally:
            self._consumer.unassign()
        if pending - growing:
            log.warning("no end-of-partition answer within %.1f s for %s; using the last offset "
                        "seen", self.timeout, sorted(pending - growing))
        return ends, exact


def true_end_offsets(bootstrap_servers: str, topics: Iterable[str],
                     config: dict[str, str] | None = None,
                     timeout: float = 5.0) -> dict[TopicPartitionKey, int]:
    """The true log end offset (next offset to be written) of every partition of ``topics``
    that exists, correct on Apache Kafka and on Tansu (whose reported high watermark can lag
    the end). Missing topics are absent from the result. For repeated calls keep a
    ``LogProbe`` instead: it skips partitions that did not change."""
    with LogProbe(bootstrap_servers, config, timeout) as probe:
        return probe.end_offsets(probe.partitions_of(topics))
