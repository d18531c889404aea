"""De-duplication of events by ``event_id`` within the event-time watermark."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType


def deduplicate(events: DataFrame, watermark: str) -> DataFrame:
    """Keep the first copy of each ``event_id`` (Spark 4 ``dropDuplicatesWithinWatermark``).

    On a stream, copies arriving within ``watermark`` of the first are dropped, and events
    older than the watermark are dropped as too late; on a batch DataFrame it is a plain
    de-duplication.
    """
    if not events.isStreaming:
        return events.dropDuplicates(["event_id"])
    return events.withWatermark("event_time", watermark).dropDuplicatesWithinWatermark(
        ["event_id"])


_KEYS = StructType([StructField("event_id", StringType()),
                    StructField("event_time", TimestampType())])


def deduplicate_valid(validated: DataFrame, watermark: str) -> DataFrame:
    """The valid records of :func:`streaming.transforms.parse.validate` (all their columns plus
    ``event_id`` and ``event_time`` read from the canonical JSON), keeping the first copy of
    each (``topic``, ``event_id``) within ``watermark``, as :func:`deduplicate` does."""
    keyed = (validated.where(F.col("reason").isNull())
             .withColumn("_keys", F.from_json("text", _KEYS))
             .select("*", "_keys.event_id", "_keys.event_time").drop("_keys"))
    if not keyed.isStreaming:
        return keyed.dropDuplicates(["topic", "event_id"])
    return keyed.withWatermark("event_time", watermark).dropDuplicatesWithinWatermark(
        ["topic", "event_id"])
