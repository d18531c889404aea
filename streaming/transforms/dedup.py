"""De-duplication of events by ``event_id`` within the event-time watermark."""

from __future__ import annotations

from pyspark.sql import DataFrame


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
