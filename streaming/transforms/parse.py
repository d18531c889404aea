"""Parsing and validation of Kafka records against the event contracts.

Validation runs the contract models of :mod:`globalmart.contracts` themselves (in a columnar
Arrow map), so the stream accepts and rejects exactly what the contract does. A valid record
is re-serialised in the contract's canonical JSON (normalised UUIDs, exact decimals, UTC-aware
times) and only then parsed into the topic's Spark schema, which therefore never meets a value
it cannot represent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.schemas import TOPIC_SCHEMAS

MAX_REASON = 500


def _reason(exc: Exception) -> str:
    """A short, human reason from a validation error."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False, include_input=False)[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "payload"
            parts.append(f"{where}: {error['msg']}")
        text = "; ".join(parts)
    else:
        text = str(exc)
    return text[:MAX_REASON]


def check_record(topic: str | None, value: bytes | None) -> tuple[str | None, str]:
    """Validate one record: ``(None, canonical JSON)`` when valid, else ``(reason, payload text)``.

    The payload text is the original bytes decoded as UTF-8 with replacement characters.
    """
    from globalmart.contracts import INPUT_TOPICS, parse_event

    raw = bytes(value) if value is not None else b""
    if topic not in INPUT_TOPICS:
        return f"unknown topic {topic!r}", raw.decode("utf-8", "replace")
    if not raw:
        return "empty payload", ""
    try:
        event = parse_event(topic, raw)
    except Exception as exc:  # noqa: BLE001 - every failure is a rejection with its reason
        return _reason(exc), raw.decode("utf-8", "replace")
    return None, event.model_dump_json()


VALIDATED_SCHEMA = StructType([
    StructField("topic", StringType()),
    StructField("kafka_partition", IntegerType()),
    StructField("kafka_offset", LongType()),
    StructField("kafka_timestamp", TimestampType()),
    StructField("reason", StringType()),
    StructField("text", StringType()),
])


def _verdicts(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each record's verdict, columnar in and out."""
    for batch in batches:
        results = [check_record(topic, value) for topic, value in
                   zip(batch.column("topic").to_pylist(), batch.column("value").to_pylist(),
                       strict=True)]
        yield pa.RecordBatch.from_arrays(
            [batch.column("topic"), batch.column("partition").cast(pa.int32()),
             batch.column("offset").cast(pa.int64()),
             batch.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
             pa.array([r[0] for r in results], pa.string()),
             pa.array([r[1] for r in results], pa.string())],
            schema=_ARROW_SCHEMA)


_ARROW_SCHEMA = pa.schema([
    ("topic", pa.string()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("kafka_timestamp", pa.timestamp("us", tz="UTC")), ("reason", pa.string()),
    ("text", pa.string()),
])


def validate(records: DataFrame) -> DataFrame:
    """Kafka records (``topic``, ``partition``, ``offset``, ``value``, ``timestamp``) with their
    verdict: ``reason`` (null when valid) and ``text`` (canonical JSON when valid, else the
    original payload as text), as columns topic, kafka_partition, kafka_offset,
    kafka_timestamp, reason, text."""
    return records.select("topic", "partition", "offset", "timestamp", "value") \
        .mapInArrow(_verdicts, VALIDATED_SCHEMA)


def rejected(validated: DataFrame) -> DataFrame:
    """The invalid records: where they came from, the reason and the original payload."""
    return validated.where(F.col("reason").isNotNull()).select(
        "topic", "kafka_partition", "kafka_offset",
        F.col("reason"), F.col("text").alias("payload"),
    )


def _typed(text: Column, topic: str) -> Column:
    return F.from_json(text, TOPIC_SCHEMAS[topic], {"mode": "FAILFAST"})


def accepted(validated: DataFrame, topic: str) -> DataFrame:
    """The valid events of ``topic`` in its Spark schema, plus ``kafka_partition``,
    ``kafka_offset`` and ``event_date`` (UTC date of ``event_time``)."""
    fields = TOPIC_SCHEMAS[topic].fieldNames()
    return (
        validated.where((F.col("topic") == topic) & F.col("reason").isNull())
        .select(_typed(F.col("text"), topic).alias("e"), "kafka_partition", "kafka_offset")
        .select(*[F.col(f"e.{name}").alias(name) for name in fields],
                "kafka_partition", "kafka_offset")
        .withColumn("event_date", F.to_date("event_time"))
    )
