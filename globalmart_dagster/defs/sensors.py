"""The Kafka sensor: watches the topics and the streaming app, and builds each day once the
stream has passed it.

Every tick it reads the topics' true end offsets and the streaming app's progress
(``pipeline_metrics``), records them as observations on the raw-layer assets (end offset,
events produced per second since the previous tick, consumer lag, processing rate, latest event
time) and, for every day whose end the stream's event time has passed (plus a grace delay),
requests a ``daily_warehouse_job`` run for that partition. The cursor holds the next day to
request; it moves past a day only in the tick that requests it (the cursor and the run requests
are stored together), and run keys are unique per day, so no day is skipped or requested twice.

A broker that lost its topics (the embedded broker keeps them in memory) shows as end offsets
below the previous tick's: the sensor warns, records ``topic_reset`` and carries on; days already
requested stay requested.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from confluent_kafka import KafkaException

from globalmart_dagster.constants import RAW_TOPICS
from globalmart_dagster.defs.jobs import daily_warehouse_job
from globalmart_dagster.defs.raw.assets import raw_asset_key
from globalmart_dagster.partitions import daily_partitions
from globalmart_dagster.resources import KafkaResource, LakeResource, WarehouseResource
from globalmart_dagster.settings import DagsterSettings

PROGRESS_SQL = """
SELECT t.topic, m.max_event_time, m.lag_records, m.processed_rows_per_second, m.processed_at
FROM unnest(%(topics)s::text[]) AS t(topic)
LEFT JOIN LATERAL (
    SELECT max_event_time, lag_records, processed_rows_per_second, processed_at
    FROM public.pipeline_metrics p WHERE p.topic = t.topic AND p.query_name = 'raw'
    ORDER BY processed_at DESC LIMIT 1) m ON true
"""
# The raw-layer query is what the warehouse reads: its event time decides a day's end.
STREAM_TIME_SQL = ("SELECT max(max_event_time) FROM public.pipeline_metrics "
                   "WHERE query_name = 'raw'")


@dataclass
class SensorCursor:
    """What the sensor remembers between ticks (stored as JSON)."""

    next_day: date | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    observed_at: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "SensorCursor":
        """The cursor from its JSON (an empty or missing cursor is the initial state)."""
        if not raw:
            return cls()
        data = json.loads(raw)
        next_day = data.get("next_day")
        return cls(next_day=date.fromisoformat(next_day) if next_day else None,
                   offsets={k: int(v) for k, v in data.get("offsets", {}).items()},
                   observed_at=data.get("observed_at"))

    def dump(self) -> str:
        """The cursor as JSON."""
        return json.dumps({"next_day": self.next_day.isoformat() if self.next_day else None,
                           "offsets": self.offsets, "observed_at": self.observed_at},
                          sort_keys=True)


def last_complete_day(stream_time: datetime | None, close_delay: timedelta) -> date | None:
    """The latest day whose end the stream's event time has passed by ``close_delay``."""
    if stream_time is None:
        return None
    return (stream_time - close_delay).astimezone(UTC).date() - timedelta(days=1)


def days_to_request(cursor: SensorCursor, first_data_day: date | None,
                    complete_through: date | None, earliest: date, max_days: int) -> list[date]:
    """The days this tick requests: from the cursor's next day (initially the first day with
    data) through the last complete day, at most ``max_days``, never before ``earliest``."""
    start = cursor.next_day or first_data_day
    if start is None or complete_through is None:
        return []
    start = max(start, earliest)
    days: list[date] = []
    day = start
    while day <= complete_through and len(days) < max_days:
        days.append(day)
        day += timedelta(days=1)
    return days


def run_key(day: date) -> str:
    """Run key of the daily build of ``day`` (one run per day, ever)."""
    return f"{daily_warehouse_job.name}:{day.isoformat()}"


def _topic_observations(context: dg.SensorEvaluationContext, cursor: SensorCursor,
                        offsets: dict[str, int], progress: dict[str, dict[str, Any]],
                        now: float) -> tuple[list[dg.AssetObservation], dict[str, int]]:
    observations = []
    kept_offsets = dict(cursor.offsets)
    elapsed = now - cursor.observed_at if cursor.observed_at else None
    for topic in RAW_TOPICS:
        metadata: dict[str, Any] = {}
        end = offsets.get(topic)
        previous = cursor.offsets.get(topic)
        if end is not None:
            metadata["end_offset"] = end
            if previous is not None and end < previous:
                context.log.warning(
                    f"topic {topic}: end offset {end} is below the previous {previous}; the "
                    "broker lost or recreated the topic (days already requested stay requested)")
                metadata["topic_reset"] = True
            elif previous is not None and elapsed:
                metadata["produced_since_last_tick"] = end - previous
                metadata["produced_per_second"] = round((end - previous) / elapsed, 3)
            kept_offsets[topic] = end
        stream = progress.get(topic) or {}
        if stream.get("lag_records") is not None:
            metadata["lag_records"] = int(stream["lag_records"])
            metadata["processed_rows_per_second"] = float(stream["processed_rows_per_second"])
        if stream.get("max_event_time") is not None:
            metadata["max_event_time"] = stream["max_event_time"].isoformat()
        if metadata:
            observations.append(dg.AssetObservation(asset_key=raw_asset_key(topic),
                                                    metadata=metadata))
    return observations, kept_offsets


def _partition_observations(lake: LakeResource, day: date) -> list[dg.AssetObservation]:
    observations = []
    for topic in RAW_TOPICS:
        files, size = lake.raw_day_files(topic, day)
        observations.append(dg.AssetObservation(
            asset_key=raw_asset_key(topic), partition=day.isoformat(),
            metadata={"files": files, "bytes": size, "complete": True},
        ))
    return observations


def _first_data_day(lake: LakeResource) -> date | None:
    days = [d for topic in RAW_TOPICS for d in lake.raw_days(topic)[:1]]
    return min(days) if days else None


@dg.sensor(
    name="kafka_sensor",
    job=daily_warehouse_job,
    minimum_interval_seconds=DagsterSettings().sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records Kafka end offsets, lag and throughput on the raw-layer assets and "
                "requests the daily build of each day the stream has passed.",
)
def kafka_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource,
                 warehouse: WarehouseResource, lake: LakeResource) -> dg.SensorResult:
    """See the module docstring."""
    settings = DagsterSettings()
    cursor = SensorCursor.parse(context.cursor)
    now = datetime.now(UTC).timestamp()
    try:
        offsets = kafka.end_offsets(RAW_TOPICS)
    except KafkaException as exc:  # a broker outage must not stop the day builds
        context.log.warning(f"cannot read end offsets from Kafka: {exc}")
        offsets = {}
    rows = warehouse.rows(PROGRESS_SQL, {"topics": list(RAW_TOPICS)})
    progress = {row["topic"]: row for row in rows}
    stream_time = warehouse.scalar(STREAM_TIME_SQL)

    observations, kept_offsets = _topic_observations(context, cursor, offsets, progress, now)
    complete_through = last_complete_day(
        stream_time, timedelta(minutes=settings.day_close_delay_minutes))
    days = days_to_request(
        cursor, _first_data_day(lake) if cursor.next_day is None else None, complete_through,
        earliest=date.fromisoformat(daily_partitions.start.strftime("%Y-%m-%d")),
        max_days=settings.max_days_per_tick,
    )
    requests = [
        dg.RunRequest(run_key=run_key(day), partition_key=day.isoformat(),
                      tags={"globalmart/trigger": "kafka_sensor"})
        for day in days
    ]
    for day in days:
        observations.extend(_partition_observations(lake, day))
    new_cursor = SensorCursor(
        next_day=days[-1] + timedelta(days=1) if days else cursor.next_day,
        offsets=kept_offsets, observed_at=now if offsets else cursor.observed_at,
    )
    skip = None
    if not requests:
        skip = (f"no day to build: stream event time {stream_time or 'unknown'}, next day "
                f"{new_cursor.next_day or 'the first day in the raw layer'}")
    return dg.SensorResult(run_requests=requests, skip_reason=skip, asset_events=observations,
                           cursor=new_cursor.dump())


SENSORS = [kafka_sensor]
