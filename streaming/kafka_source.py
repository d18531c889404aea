"""A Kafka source for Spark written on Spark 4's Python Data Source API (no connector jar).

``spark.readStream.format("globalmart_kafka")`` (after :func:`register_kafka_source`) yields the
same columns as Spark's native ``kafka`` format — key, value, topic, partition, offset, timestamp,
timestampType — so the two can be swapped by a setting. Offsets per topic-partition live in the
query's checkpoint (``{"topic": {"partition": next_offset}}``, like the native source);
``maxOffsetsPerTrigger`` bounds a micro-batch and is split over the partitions in proportion
to their backlogs, like the native source (so that, while catching up, all partitions advance
by the same fraction of their backlog and stay together in event time); every Kafka partition
with records in the batch is one Spark input partition (unless ``maxInputPartitions`` groups
them), read with a confluent-kafka consumer that is assigned (never subscribed) and commits
nothing.

The broker may be Apache Kafka or Tansu, whose reported log end can lag the true end; the log
ends come from :class:`globalmart.kafka.LogProbe`, which finds the true end on both (on Tansu
once a partition stops growing: until then a batch ends at the reported end, and the rest of
the last record batch comes with the next one). When the broker forgets a topic (an in-memory
broker restarted) or a partition's log ends before the checkpointed offset, the source logs a
WARNING naming the topic and partitions and continues from the log start; a topic that does not
exist yet is waited for. ``failOnDataLoss=true`` makes data loss an error.

Options (case-insensitive; anything else is refused):

============================  =============================================================
``kafka.bootstrap.servers``   required
``subscribe``                 required: comma-separated topic names
``startingOffsets``           ``earliest`` | ``latest`` | JSON ``{"t": {"0": 42}}`` with -2 =
                              earliest, -1 = latest (default: ``latest`` for streams,
                              ``earliest`` for batch reads)
``endingOffsets``             batch reads only: ``latest`` (default) | JSON as above
``maxOffsetsPerTrigger``      records per micro-batch over all partitions, split in proportion
                              to their backlogs (default: no limit)
``maxInputPartitions``        at most this many Spark tasks per batch: whole Kafka partitions
                              are grouped (default: one task per Kafka partition; small values
                              cut the per-task overhead of low-rate streams on few cores)
``failOnDataLoss``            ``false`` (default): warn and go on; ``true``: fail the query
``kafkaConsumer.pollTimeoutMs``  how long a task waits for a record before it checks the log
                              end (default 30000; see :func:`read_ranges`)
``kafka.<librdkafka key>``    passed to confluent-kafka (security settings, for instance)
============================  =============================================================
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pyspark.sql import SparkSession
from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from globalmart.kafka import LibrdkafkaLog, LogProbe, TopicPartitionKey

log = logging.getLogger(__name__)

SOURCE_NAME = "globalmart_kafka"

KAFKA_SCHEMA = StructType([
    StructField("key", BinaryType()),
    StructField("value", BinaryType()),
    StructField("topic", StringType()),
    StructField("partition", IntegerType()),
    StructField("offset", LongType()),
    StructField("timestamp", TimestampType()),
    StructField("timestampType", IntegerType()),
])
"""The native Kafka source's schema, column for column."""

_ARROW_SCHEMA = to_arrow_schema(KAFKA_SCHEMA, timezone="UTC")
_EARLIEST, _LATEST = -2, -1
_ROWS_PER_ARROW_BATCH = 20_000
_PROBE_TIMEOUT_S = 5.0
_START_WAIT_S = 60.0  # how long a new query waits for the broker to find its start offsets
# confluent-kafka timestamp types (0 none, 1 create, 2 log append) -> Kafka's ids (-1, 0, 1)
_TIMESTAMP_TYPE_SHIFT = 1

Offsets = dict[TopicPartitionKey, int]


class KafkaSourceError(RuntimeError):
    """A wrong option, or data loss while ``failOnDataLoss`` is true."""


@dataclass(frozen=True)
class KafkaSourceOptions:
    """The source's options, validated (see the module docstring for their meaning)."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    starting_offsets: str
    ending_offsets: str = "latest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = False
    poll_timeout_ms: int = 30_000
    max_input_partitions: int | None = None
    kafka_config: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, str], stream: bool) -> KafkaSourceOptions:
        """Validate Spark's option map; unknown options and bad values raise
        ``KafkaSourceError``."""
        opts = {k.lower(): v for k, v in options.items() if k.lower() != "path"}
        known = {"kafka.bootstrap.servers", "subscribe", "startingoffsets", "endingoffsets",
                 "maxoffsetspertrigger", "failondataloss", "kafkaconsumer.polltimeoutms",
                 "maxinputpartitions"}
        unknown = sorted(k for k in opts if k not in known and not k.startswith("kafka."))
        if unknown:
            raise KafkaSourceError(
                f"{SOURCE_NAME}: unknown option(s) {unknown}; allowed: kafka.bootstrap.servers, "
                "subscribe, startingOffsets, endingOffsets, maxOffsetsPerTrigger, "
                "maxInputPartitions, failOnDataLoss, kafkaConsumer.pollTimeoutMs and "
                "kafka.<librdkafka setting>")
        bootstrap = opts.get("kafka.bootstrap.servers", "").strip()
        if not bootstrap:
            raise KafkaSourceError(f"{SOURCE_NAME}: option kafka.bootstrap.servers is required")
        topics = tuple(dict.fromkeys(t.strip() for t in opts.get("subscribe", "").split(",")
                                     if t.strip()))
        if not topics:
            raise KafkaSourceError(f"{SOURCE_NAME}: option subscribe (comma-separated topics) "
                                   "is required")
        starting = opts.get("startingoffsets", "latest" if stream else "earliest").strip()
        ending = opts.get("endingoffsets", "latest").strip()
        if stream and "endingoffsets" in opts:
            raise KafkaSourceError(f"{SOURCE_NAME}: endingOffsets is for batch reads only")
        _parse_offset_spec(starting, "startingOffsets")
        if _parse_offset_spec(ending, "endingOffsets") == "earliest":
            raise KafkaSourceError(f"{SOURCE_NAME}: endingOffsets cannot be 'earliest'")
        max_rows = opts.get("maxoffsetspertrigger")
        max_tasks = opts.get("maxinputpartitions")
        return cls(
            bootstrap_servers=bootstrap,
            topics=topics,
            starting_offsets=starting,
            ending_offsets=ending,
            max_offsets_per_trigger=(None if max_rows is None
                                     else _positive_int(max_rows, "maxOffsetsPerTrigger")),
            fail_on_data_loss=_boolean(opts.get("failondataloss", "false"), "failOnDataLoss"),
            poll_timeout_ms=_positive_int(opts.get("kafkaconsumer.polltimeoutms", "30000"),
                                          "kafkaConsumer.pollTimeoutMs"),
            max_input_partitions=(None if max_tasks is None
                                  else _positive_int(max_tasks, "maxInputPartitions")),
            kafka_config={k.removeprefix("kafka."): v for k, v in opts.items()
                          if k.startswith("kafka.") and k != "kafka.bootstrap.servers"},
        )


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise KafkaSourceError(f"{SOURCE_NAME}: {name} must be a positive integer, got {value!r}")
    return number


def _boolean(value: str, name: str) -> bool:
    if value.strip().lower() not in ("true", "false"):
        raise KafkaSourceError(f"{SOURCE_NAME}: {name} must be true or false, got {value!r}")
    return value.strip().lower() == "true"


def _parse_offset_spec(spec: str, name: str) -> str | Offsets:
    """'earliest' | 'latest' | {(topic, partition): offset or -2/-1} from the JSON form."""
    if spec.lower() in ("earliest", "latest"):
        return spec.lower()
    try:
        raw = json.loads(spec)
        offsets = {(str(t), int(p)): int(o) for t, parts in raw.items() for p, o in parts.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise KafkaSourceError(
            f"{SOURCE_NAME}: {name} must be 'earliest', 'latest' or JSON like "
            f'{{"topic": {{"0": 42}}}}, got {spec!r}') from exc
    if any(o < _EARLIEST for o in offsets.values()):
        raise KafkaSourceError(f"{SOURCE_NAME}: {name} offsets must be >= -2, got {spec!r}")
    return offsets


def encode_offsets(offsets: Offsets) -> dict[str, dict[str, int]]:
    """{(topic, partition): offset} -> the checkpoint form {"topic": {"partition": offset}}."""
    encoded: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        encoded.setdefault(topic, {})[str(partition)] = offset
    return encoded


def decode_offsets(encoded: Mapping[str, Mapping[str, int]]) -> Offsets:
    """The checkpoint form back to {(topic, partition): offset}."""
    return {(t, int(p)): int(o) for t, parts in encoded.items() for p, o in parts.items()}


def proportional_shares(available: Mapping[TopicPartitionKey, int], budget: int
                        ) -> dict[TopicPartitionKey, int]:
    """Split ``budget`` records over partitions with ``available`` records each, in proportion
    to their backlogs (as Spark's native Kafka source does), so that under a backlog larger
    than one batch every partition advances by the same fraction of its backlog and the
    partitions stay together in event time.

    Deterministic rounding: each partition gets the floor of ``budget × its backlog / total
    backlog``; the records left over go one each to the largest fractional parts, ties broken
    by (topic, partition). Then no partition with records is starved while the budget allows
    it: a partition left at 0 takes 1 record from the largest share (ties by topic,
    partition), as long as some share has 2 or more. The shares sum to ``min(budget, total
    backlog)`` and never exceed a partition's backlog."""
    shares = dict.fromkeys(available, 0)
    backlog = {key: n for key, n in sorted(available.items()) if n > 0}
    total = sum(backlog.values())
    if budget >= total:
        shares.update(backlog)
        return shares
    # exact integer arithmetic: quota = budget * n / total = floor + fraction / total
    fractions = {}
    for key, n in backlog.items():
        shares[key], fractions[key] = divmod(budget * n, total)
    by_fraction = sorted(backlog, key=lambda k: (-fractions[k], k))
    for key in by_fraction[:budget - sum(shares.values())]:
        shares[key] += 1
    for key in by_fraction:
        if shares[key] > 0:
            continue
        donor = min(backlog, key=lambda k: (-shares[k], k))
        if shares[donor] < 2:
            break
        shares[donor] -= 1
        shares[key] = 1
    return shares


def resolve_offsets(spec: str | Offsets, partitions: list[TopicPartitionKey],
                    probe: LogProbe) -> Offsets:
    """Concrete offsets for ``partitions`` from a start/end spec ('earliest', 'latest' or a
    JSON map in which -2 means earliest and -1 latest; partitions it omits start at the
    earliest offset)."""
    if spec == "earliest":
        return probe.start_offsets(partitions)
    if spec == "latest":
        return probe.end_offsets(partitions)
    assert isinstance(spec, dict)
    wanted = {key: spec.get(key, _EARLIEST) for key in partitions}
    starts = probe.start_offsets([k for k, o in wanted.items() if o == _EARLIEST])
    ends = probe.end_offsets([k for k, o in wanted.items() if o == _LATEST])
    resolved = {}
    for key, offset in wanted.items():
        value = {_EARLIEST: starts.get(key), _LATEST: ends.get(key)}.get(offset, offset)
        if value is not None:
            resolved[key] = value
    return resolved


class KafkaDataSource(DataSource):
    """``globalmart_kafka``: Kafka topics as a Spark stream or batch, with the native Kafka
    source's schema (see the module docstring for the options)."""

    @classmethod
    def name(cls) -> str:
        """The format name for ``spark.readStream.format(...)``."""
        return SOURCE_NAME

    def schema(self) -> StructType:
        """key, value, topic, partition, offset, timestamp, timestampType."""
        return KAFKA_SCHEMA

    def streamReader(self, schema: StructType) -> KafkaStreamReader:
        """The micro-batch reader; offsets go to the query's checkpoint."""
        return KafkaStreamReader(KafkaSourceOptions.parse(self.options, stream=True))

    def reader(self, schema: StructType) -> KafkaBatchReader:
        """A batch read of the offset range startingOffsets..endingOffsets."""
        return KafkaBatchReader(KafkaSourceOptions.parse(self.options, stream=False))


def register_kafka_source(spark: SparkSession) -> None:
    """Make ``format("globalmart_kafka")`` available in this session."""
    spark.dataSource.register(KafkaDataSource)


@dataclass(frozen=True)
class OffsetRange:
    """The records [start, end) of one Kafka partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """How many offsets the range spans."""
        return self.end - self.start


class KafkaInputPartition(InputPartition):
    """One Spark task: the offset ranges it reads, one per Kafka partition (a single range
    unless ``maxInputPartitions`` grouped several)."""

    def __init__(self, ranges: tuple[OffsetRange, ...]) -> None:
        super().__init__(ranges)
        self.ranges = ranges


def plan_input_partitions(start: Offsets, end: Offsets, max_partitions: int | None = None
                          ) -> list[KafkaInputPartition]:
    """One input partition per Kafka partition with records in [start, end); with
    ``max_partitions``, whole ranges are grouped into at most that many input partitions of
    about equal record counts (largest first into the lightest group)."""
    ranges = [OffsetRange(topic, partition, start[(topic, partition)], until)
              for (topic, partition), until in sorted(end.items())
              if (topic, partition) in start and until > start[(topic, partition)]]
    if max_partitions is None or len(ranges) <= max_partitions:
        return [KafkaInputPartition((r,)) for r in ranges]
    groups: list[list[OffsetRange]] = [[] for _ in range(max_partitions)]
    for offset_range in sorted(ranges, key=lambda r: (-r.size, r.topic, r.partition)):
        lightest = min(range(max_partitions), key=lambda i: (sum(r.size for r in groups[i]), i))
        groups[lightest].append(offset_range)
    return [KafkaInputPartition(tuple(sorted(group, key=lambda r: (r.topic, r.partition))))
            for group in groups]


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches from the log ends and reads them (see the module docstring).

    One instance lives in the driver's planner process for the whole query, so it keeps the
    probe connection and remembers what it warned about; Spark creates throwaway instances
    elsewhere, hence nothing connects before it is needed."""

    def __init__(self, options: KafkaSourceOptions) -> None:
        self.options = options
        self._probe: LogProbe | None = None
        self._latest: Offsets = {}
        self._target: Offsets | None = None
        self._waiting_for: set[str] = set()
        self._gone: set[str] = set()
        self._unreachable_since: float | None = None

    # -- planning (driver) -------------------------------------------------------------------

    @property
    def probe(self) -> LogProbe:
        if self._probe is None:
            self._probe = LogProbe(self.options.bootstrap_servers, self.options.kafka_config,
                                   _PROBE_TIMEOUT_S)
        return self._probe

    def initialOffset(self) -> dict:
        """Offsets of the existing partitions per ``startingOffsets``; topics that do not exist
        yet are read from their start once they appear."""
        spec = _parse_offset_spec(self.options.starting_offsets, "startingOffsets")
        deadline = time.monotonic() + _START_WAIT_S
        while True:
            try:
                partitions = self.probe.partitions_of(self.options.topics)
                offsets = resolve_offsets(spec, partitions, self.probe)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise KafkaSourceError(
                        f"{SOURCE_NAME}: cannot reach Kafka at {self.options.bootstrap_servers} "
                        f"within {_START_WAIT_S:.0f} s to find the starting offsets of "
                        f"{list(self.options.topics)}: {exc}") from exc
                log.warning("%s: Kafka at %s does not answer yet (%s); retrying", SOURCE_NAME,
                            self.options.bootstrap_servers, exc)
                time.sleep(1.0)  # back off between connection attempts
        self._warn_missing_topics({t for t, _ in partitions})
        return encode_offsets(offsets)

    def getDefaultReadLimit(self) -> ReadLimit:
        """``maxOffsetsPerTrigger`` records per micro-batch, or everything available."""
        if self.options.max_offsets_per_trigger is None:
            return ReadAllAvailable()
        return ReadMaxRows(self.options.max_offsets_per_trigger)

    def prepareForTriggerAvailableNow(self) -> None:
        """Trigger.AvailableNow: read up to the log ends of now, then stop."""
        partitions = self.probe.partitions_of(self.options.topics)
        self._target = self.probe.end_offsets(partitions)

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        """The end of the next micro-batch: each partition's log end (while it is being written
        to, the end the broker reports, see :meth:`LogProbe.end_offsets`), capped by the read
        limit (split in proportion to the backlogs, see :func:`proportional_shares`).
        Partitions whose log was lost (broker restart) are moved back to their log
        start; new partitions are registered at their log start and read from the next
        batch. Broker outages give "no new data", with a warning, instead of an error."""
        begin = decode_offsets(start)
        try:
            present = self.probe.topic_partitions(self.options.topics)
            ends = self.probe.end_offsets([(t, p) for t, ps in present.items() for p in ps],
                                           exact=False)
            moved = self._repositioned(begin, present, ends)
        except KafkaException as exc:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                log.warning("%s: Kafka at %s is unreachable (%s); no new data until it answers",
                            SOURCE_NAME, self.options.bootstrap_servers, exc)
            return start
        if self._unreachable_since is not None:
            log.warning("%s: Kafka at %s answers again after %.0f s", SOURCE_NAME,
                        self.options.bootstrap_servers, time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
        self._latest = ends
        end = {**begin, **moved}
        readable = {key: ends[key] - offset for key, offset in begin.items()
                    if key in ends and end[key] == offset and ends[key] > offset}
        if self._target is not None:
            readable = {key: min(n, self._target.get(key, 0) - begin[key])
                        for key, n in readable.items()}
        if isinstance(limit, ReadMaxRows):
            readable = proportional_shares(readable, limit.max_rows)
        for key, n in readable.items():
            if n > 0:
                end[key] = begin[key] + n
        return encode_offsets(end)

    def _repositioned(self, begin: Offsets, present: dict[str, list[int]], ends: Offsets
                      ) -> Offsets:
        """New partitions (at their log start) and partitions whose checkpointed offset no
        longer exists (moved back to the log start), with the warnings."""
        self._warn_missing_topics(set(present), begin)
        moved: dict[TopicPartitionKey, int] = {}
        lost: dict[str, list[int]] = {}
        for topic in self.options.topics:
            if topic not in present:
                continue
            for partition in present[topic]:
                key = (topic, partition)
                if key not in ends:
                    continue  # not answering right now; keep its offset
                if key not in begin:
                    moved[key] = -1
                elif topic in self._gone or begin[key] > ends[key]:
                    moved[key] = -1
                    lost.setdefault(topic, []).append(partition)
        if not moved:
            return {}
        starts = self.probe.start_offsets(moved)
        moved = {key: starts[key] for key in moved if key in starts}
        for topic, partitions in lost.items():
            self._data_lost(topic, {p: begin[(topic, p)] for p in partitions},
                            {p: ends[(topic, p)] for p in partitions},
                            {p: moved.get((topic, p)) for p in partitions},
                            recreated=topic in self._gone)
        self._gone -= set(present)
        return moved

    def _warn_missing_topics(self, present: set[str], begin: Offsets | None = None) -> None:
        """Warn once per absence of a subscribed topic; remember it so that, when it comes
        back, it is read from its start."""
        for topic in self.options.topics:
            if topic in present:
                self._waiting_for.discard(topic)
                continue
            if topic in self._waiting_for:
                continue
            self._waiting_for.add(topic)
            self._gone.add(topic)
            known = {p: o for (t, p), o in sorted((begin or {}).items()) if t == topic}
            if known:
                log.warning("%s: topic %r is gone from %s (partitions %s, checkpointed offsets "
                            "%s): the broker lost it (an in-memory broker restarted?); waiting "
                            "for it to come back, then reading it from its start", SOURCE_NAME,
                            topic, self.options.bootstrap_servers, sorted(known), known)
            else:
                log.warning("%s: topic %r does not exist on %s yet; waiting for it, then "
                            "reading it from its start", SOURCE_NAME, topic,
                            self.options.bootstrap_servers)

    def _data_lost(self, topic: str, checkpointed: dict[int, int], log_ends: dict[int, int],
                   restart_at: dict[int, int | None], recreated: bool) -> None:
        cause = ("the topic was recreated after it had gone" if recreated
                 else f"the log ends {log_ends} are before the checkpointed offsets")
        message = (f"{SOURCE_NAME}: topic {topic!r} partitions {sorted(checkpointed)} on "
                   f"{self.options.bootstrap_servers}: {cause}; the broker lost the records "
                   f"from the checkpointed offsets {checkpointed} on (an in-memory broker "
                   "restarted?)")
        if self.options.fail_on_data_loss:
            raise KafkaSourceError(message + "; failing because failOnDataLoss is true")
        self.probe.forget((topic, p) for p in checkpointed)
        log.warning("%s; continuing from the log start %s", message, restart_at)

    def reportLatestOffset(self) -> dict | None:
        """The log ends seen by the last ``latestOffset`` (for the query progress)."""
        return encode_offsets(self._latest) if self._latest else None

    def partitions(self, start: dict, end: dict) -> list[KafkaInputPartition]:
        """One input partition per Kafka partition with records in [start, end) (grouped
        when ``maxInputPartitions`` is set)."""
        return plan_input_partitions(decode_offsets(start), decode_offsets(end),
                                     self.options.max_input_partitions)

    def commit(self, end: dict) -> None:
        """Nothing to do: the offsets live in Spark's checkpoint."""

    def stop(self) -> None:
        """Close the probe's consumer."""
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- reading (executors) -----------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """The records of one input partition's offset ranges, as Arrow batches."""
        assert isinstance(partition, KafkaInputPartition)
        return read_ranges(self.options, partition.ranges)


class KafkaBatchReader(DataSourceReader):
    """``spark.read.format("globalmart_kafka")``: the records between startingOffsets and
    endingOffsets, resolved when the query is planned."""

    def __init__(self, options: KafkaSourceOptions) -> None:
        self.options = options

    def partitions(self) -> list[KafkaInputPartition]:
        """One input partition per Kafka partition with records in the range (grouped
        when ``maxInputPartitions`` is set)."""
        with LogProbe(self.options.bootstrap_servers, self.options.kafka_config,
                      _PROBE_TIMEOUT_S) as probe:
            partitions = probe.partitions_of(self.options.topics)
            missing = set(self.options.topics) - {t for t, _ in partitions}
            if missing:
                log.warning("%s: topics %s do not exist on %s; reading none of their records",
                            SOURCE_NAME, sorted(missing), self.options.bootstrap_servers)
            start = resolve_offsets(_parse_offset_spec(self.options.starting_offsets,
                                                       "startingOffsets"), partitions, probe)
            end = resolve_offsets(_parse_offset_spec(self.options.ending_offsets,
                                                     "endingOffsets"), partitions, probe)
        return plan_input_partitions(start, end, self.options.max_input_partitions)

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """The records of one input partition's offset ranges, as Arrow batches."""
        if not isinstance(partition, KafkaInputPartition):
            return iter(())  # Spark's placeholder when there is nothing to read
        return read_ranges(self.options, partition.ranges)


def read_ranges(options: KafkaSourceOptions, ranges: Iterable[OffsetRange]
                ) -> Iterator[pa.RecordBatch]:
    """Yield the records of the offset ranges (one per Kafka partition, read together by one
    consumer) as Arrow batches in the source's schema, each range's records in offset order.
    Records that a reachable broker no longer has (retention, an in-memory broker that
    restarted) are skipped with a WARNING, or fail the task when ``failOnDataLoss`` is true.
    While the broker is unreachable the task waits (warning every
    ``kafkaConsumer.pollTimeoutMs``); records the broker has but does not deliver within that
    time fail the task."""
    pending = {(r.topic, r.partition): _RangeReader(r, options) for r in ranges if r.size > 0}
    if not pending:
        return
    consumer = Consumer({
        "isolation.level": "read_uncommitted",  # as LogProbe and Spark's native source
        "bootstrap.servers": options.bootstrap_servers,
        **options.kafka_config,
        "group.id": "globalmart-spark-source",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
    }, logger=LibrdkafkaLog())
    try:
        consumer.assign([TopicPartition(r.part.topic, r.part.partition, r.part.start)
                         for r in pending.values()])
        while pending:
            wanted = sum(r.part.end - r.position for r in pending.values())
            for message in consumer.consume(min(10_000, wanted), timeout=0.01):
                reader = pending.get((message.topic() or "", message.partition() or 0))
                if reader is not None:
                    reader.take(message)
                elif message.error() is not None:  # not about one partition: a stall shows
                    log.debug("%s: %s", SOURCE_NAME, message.error())
            for key, reader in list(pending.items()):
                reader.check_progress()
                if reader.done or reader.buffered >= _ROWS_PER_ARROW_BATCH:
                    yield from reader.flush()
                if reader.done:
                    consumer.pause([TopicPartition(*key)])
                    del pending[key]
    finally:
        consumer.close()


class _RangeReader:
    """Reading state of one offset range: position, buffered columns, stall deadline."""

    def __init__(self, part: OffsetRange, options: KafkaSourceOptions) -> None:
        self.part = part
        self.end = part.end
        self.options = options
        self.where = f"{part.topic}[{part.partition}]"
        self.position = part.start
        self.columns = _empty_columns()
        self.wait = options.poll_timeout_ms / 1000
        self.deadline = time.monotonic() + self.wait
        self.progressed = False

    @property
    def done(self) -> bool:
        return self.position >= self.end

    @property
    def buffered(self) -> int:
        return len(self.columns["offset"])

    def take(self, message: Any) -> None:
        """Keep a record of the range; act on end-of-partition events and gaps (nothing once
        the range is complete: later messages of the same poll are not this batch's)."""
        if self.done:
            return
        error, offset = message.error(), message.offset() or 0
        if error is None and offset == self.position and offset < self.end:
            _append(self.columns, message)  # the common case: the next record
            self.position = offset + 1
            self.progressed = True
            return
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: reading %s: %s", SOURCE_NAME, self.where, error)
            elif offset <= self.position and self._past_log_end():
                self._lost(f"the log ends at {offset} but the batch planned records up to "
                           f"{self.end}; records [{self.position}, {self.end}) are gone (a "
                           "broker that lost data?)")
                self.position = self.end
            return
        if offset < self.position:
            return
        if offset >= self.end:
            self.position = self.end
            return
        self._lost(f"records [{self.position}, {offset}) are gone (retention or a broker "
                   "that lost data); skipped")
        _append(self.columns, message)
        self.position = offset + 1
        self.progressed = True

    def check_progress(self) -> None:
        """After ``wait`` without a record, ask the broker where the log ends: wait on while
        it is unreachable, skip what it no longer has, fail if it has records it does not
        deliver."""
        if self.progressed:
            self.progressed = False
            self.deadline = time.monotonic() + self.wait
        if self.done or time.monotonic() <= self.deadline:
            return
        log_end = _log_end(self.options, self.part)
        self.deadline = time.monotonic() + self.wait
        if log_end is None:
            log.warning("%s: Kafka at %s is unreachable while reading %s at offset %d; "
                        "waiting for it", SOURCE_NAME, self.options.bootstrap_servers,
                        self.where, self.position)
        elif log_end > self.position:
            raise KafkaSourceError(
                f"{SOURCE_NAME}: no record of {self.where} at offset {self.position} arrived "
                f"within {self.wait:.0f} s although the log ends at {log_end} (raise "
                "kafkaConsumer.pollTimeoutMs?)")
        else:
            self._lost(f"the log ends at {log_end} but the batch planned records up to "
                       f"{self.part.end}; records [{self.position}, {self.part.end}) are gone "
                       "(a broker that lost data?)")
            self.position = self.part.end

    def flush(self) -> Iterator[pa.RecordBatch]:
        """The buffered records as one Arrow batch (nothing if none)."""
        if self.buffered:
            batch = _arrow_batch(self.columns, self.part)
            self.columns = _empty_columns()
            yield batch

    def _past_log_end(self) -> bool:
        log_end = _log_end(self.options, self.part)
        return log_end is not None and log_end <= self.position

    def _lost(self, detail: str) -> None:
        if self.options.fail_on_data_loss:
            raise KafkaSourceError(f"{SOURCE_NAME}: {self.where}: {detail}; failing because "
                                   "failOnDataLoss is true")
        log.warning("%s: %s: %s", SOURCE_NAME, self.where, detail)


def _log_end(options: KafkaSourceOptions, part: OffsetRange) -> int | None:
    """The partition's true log end now, as a second opinion before declaring records lost:
    0 when the topic or partition no longer exists, None when the broker does not answer."""
    key = (part.topic, part.partition)
    with LogProbe(options.bootstrap_servers, options.kafka_config, _PROBE_TIMEOUT_S) as probe:
        try:
            present = probe.topic_partitions([part.topic])
        except KafkaException:
            return None
        if part.partition not in present.get(part.topic, []):
            return 0
        return probe.end_offsets([key]).get(key)


def _empty_columns() -> dict[str, list[Any]]:
    return {"key": [], "value": [], "offset": [], "timestamp": [], "timestampType": []}


def _append(columns: dict[str, list[Any]], message: Any) -> None:
    kind, millis = message.timestamp()
    columns["key"].append(message.key())
    columns["value"].append(message.value())
    columns["offset"].append(message.offset())
    columns["timestamp"].append(millis * 1000 if kind else None)
    columns["timestampType"].append(kind - _TIMESTAMP_TYPE_SHIFT)


def _arrow_batch(columns: dict[str, list[Any]], part: OffsetRange) -> pa.RecordBatch:
    rows = len(columns["offset"])
    return pa.RecordBatch.from_arrays([
        pa.array(columns["key"], pa.binary()),
        pa.array(columns["value"], pa.binary()),
        pa.repeat(pa.scalar(part.topic, pa.string()), rows),
        pa.repeat(pa.scalar(part.partition, pa.int32()), rows),
        pa.array(columns["offset"], pa.int64()),
        pa.array(columns["timestamp"], pa.timestamp("us", tz="UTC")),
        pa.array(columns["timestampType"], pa.int32()),
    ], schema=_ARROW_SCHEMA)
