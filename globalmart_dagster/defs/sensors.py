"""The complete-days sensor: builds each day once the raw layer holds all of it, and builds it
again when late events change it.

**Completeness (an offset fence per input partition).** When the stream's event time passes a
day's end plus ``day_close_delay_minutes``, the sensor records the day's *fence*: the end offset
of every input partition at that moment, i.e. everything the broker held when the day closed.
The day is requested once the raw layer's Kafka progress (``public.raw_progress``, advanced by
the stream's raw-layer flush in the same transaction as the files it wrote) has reached the
fence on every partition. The highest event time alone never decides: a backlog or a replay
interleaves old and new event times. The skip reason names the partitions still short of a
fence.

**Late data.** Every tick the sensor lists the raw layer and derives a data version per topic
and day (from its files' names and sizes: the stream only adds files, named by the batches they
hold). When a day that was built changes, a new fence is recorded and, once it is reached, the
day is requested again under a run key naming the new version: one rebuild per change, never a
loop. The request carries observations of the raw partitions with their ``DataVersion`` so the
UI shows the downstream partitions as stale until the rebuild. The rebuild replaces the day's
facts and the day's own mart snapshots; then ``latest_marts_job`` rebuilds the latest snapshot
of every mart (queued behind it: one run at a time). Older snapshots inside a mart's window keep
the figures known when they were built (see docs/dagster.md).

The sensor also records end offsets, produced rate and the stream's lag on the raw-layer
assets. A broker it cannot reach fences a day at the raw layer's progress (with a warning), so
the builds go on; a topic whose end offsets went down (deleted and created again) is reported
as ``topic_reset``, and its fences are capped at the new ends.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from confluent_kafka import KafkaException

from globalmart.vocabulary import RAW_QUERY
from globalmart_dagster.constants import RAW_TOPICS
from globalmart_dagster.defs.jobs import daily_warehouse_job, latest_marts_job
from globalmart_dagster.defs.raw.assets import raw_asset_key
from globalmart_dagster.partitions import daily_partitions
from globalmart_dagster.resources import (
    DayBuildsResource,
    KafkaResource,
    LakeResource,
    WarehouseResource,
)
from globalmart_dagster.settings import DagsterSettings

PROGRESS_SQL = f"""
SELECT t.topic, m.max_event_time, m.lag_records, m.processed_rows_per_second, m.processed_at
FROM unnest(%(topics)s::text[]) AS t(topic)
LEFT JOIN LATERAL (
    SELECT max_event_time, lag_records, processed_rows_per_second, processed_at
    FROM public.pipeline_metrics p WHERE p.topic = t.topic AND p.query_name = '{RAW_QUERY}'
    ORDER BY processed_at DESC LIMIT 1) m ON true
"""
# The raw-layer query is what the warehouse reads: its event time closes a day.
STREAM_TIME_SQL = ("SELECT max(max_event_time) FROM public.pipeline_metrics "
                   f"WHERE query_name = '{RAW_QUERY}'")
RAW_PROGRESS_SQL = "SELECT topic, kafka_partition, next_offset FROM public.raw_progress"
# The tag under which an observation carries its DataVersion (Dagster reads it for staleness).
DATA_VERSION_TAG = "dagster/data_version"

Offsets = dict[str, int]
"""Per input partition, keyed ``"<topic>:<partition>"`` (JSON-friendly)."""


def partition_key(topic: str, partition: int) -> str:
    """The key of a partition in :data:`Offsets`."""
    return f"{topic}:{partition}"


@dataclass
class SensorCursor:
    """What the sensor remembers between ticks (stored as JSON).

    ``next_day``: the next day never built; ``fences``: per day waiting for the raw layer, the
    offsets it must reach; ``built``: per day requested, the raw data version it was requested
    at; ``offsets``/``observed_at``: the topics' end offsets at the previous tick (rates)."""

    next_day: date | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    observed_at: float | None = None
    fences: dict[str, Offsets] = field(default_factory=dict)
    built: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "SensorCursor":
        """The cursor from its JSON (an empty or missing cursor is the initial state)."""
        if not raw:
            return cls()
        data = json.loads(raw)
        next_day = data.get("next_day")
        return cls(next_day=date.fromisoformat(next_day) if next_day else None,
                   offsets={k: int(v) for k, v in data.get("offsets", {}).items()},
                   observed_at=data.get("observed_at"),
                   fences={d: {k: int(v) for k, v in f.items()}
                           for d, f in data.get("fences", {}).items()},
                   built=dict(data.get("built", {})))

    def dump(self) -> str:
        """The cursor as JSON."""
        return json.dumps({"next_day": self.next_day.isoformat() if self.next_day else None,
                           "offsets": self.offsets, "observed_at": self.observed_at,
                           "fences": self.fences, "built": self.built}, sort_keys=True)


def last_closed_day(stream_time: datetime | None, close_delay: timedelta) -> date | None:
    """The latest day whose end the stream's event time has passed by ``close_delay``."""
    if stream_time is None:
        return None
    return (stream_time - close_delay).astimezone(UTC).date() - timedelta(days=1)


def days_closed(next_day: date | None, closed_through: date | None, earliest: date) -> list[date]:
    """The days from ``next_day`` (never before ``earliest``) through ``closed_through``."""
    if next_day is None or closed_through is None:
        return []
    day, days = max(next_day, earliest), []
    while day <= closed_through:
        days.append(day)
        day += timedelta(days=1)
    return days


def short_of_fence(fence: Offsets, progress: Offsets, ends: Offsets) -> Offsets:
    """The partitions whose raw-layer progress has not reached the fence, with how many records
    they are short. A partition whose end is now below its fence (the topic was recreated) only
    has to reach its end."""
    short = {}
    for key, target in fence.items():
        target = min(target, ends.get(key, target))
        missing = target - progress.get(key, 0)
        if missing > 0:
            short[key] = missing
    return short


def day_versions(files: Mapping[str, Mapping[date, list[tuple[str, int]]]]
                 ) -> dict[date, dict[str, str]]:
    """Data version per day and topic: a digest of the topic's files of that day (names and
    sizes). ``files``: per topic, per day, the (name, bytes) of its Parquet files."""
    versions: dict[date, dict[str, str]] = {}
    for topic, days in files.items():
        for day, entries in days.items():
            digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]
            versions.setdefault(day, {})[topic] = digest
    return versions


def combined_version(topics: Mapping[str, str]) -> str:
    """One version for a day from its topics' versions."""
    text = json.dumps(sorted(topics.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_key(day: date, version: str | None = None) -> str:
    """Run key of the build of ``day``: the first build has the day alone, a rebuild also the
    data version it was requested for (one run per change, ever)."""
    key = f"{daily_warehouse_job.name}:{day.isoformat()}"
    return key if version is None else f"{key}:{version}"


def _topic_observations(context: dg.SensorEvaluationContext, cursor: SensorCursor,
                        totals: dict[str, int], progress: dict[str, dict[str, Any]],
                        now: float) -> tuple[list[dg.AssetObservation], dict[str, int]]:
    observations = []
    kept_offsets = dict(cursor.offsets)
    elapsed = now - cursor.observed_at if cursor.observed_at else None
    for topic in RAW_TOPICS:
        metadata: dict[str, Any] = {}
        end = totals.get(topic)
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


def _partition_observations(files: Mapping[str, Mapping[date, list[tuple[str, int]]]],
                            versions: dict[str, str], day: date, rebuild: bool
                            ) -> list[dg.AssetObservation]:
    """The raw partitions of a day being requested, with their data versions."""
    observations = []
    for topic in RAW_TOPICS:
        entries = files.get(topic, {}).get(day, [])
        tags = {DATA_VERSION_TAG: versions[topic]} if topic in versions else {}
        observations.append(dg.AssetObservation(
            asset_key=raw_asset_key(topic), partition=day.isoformat(), tags=tags,
            metadata={"files": len(entries), "bytes": sum(size for _, size in entries),
                      "complete": True, "late_data": rebuild},
        ))
    return observations


def _partition_ends(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> Offsets | None:
    """The end offset of every input partition, or None when the broker does not answer."""
    try:
        ends = kafka.partition_end_offsets(RAW_TOPICS)
    except KafkaException as exc:
        context.log.warning(f"cannot read end offsets from Kafka: {exc}")
        return None
    return {partition_key(t, p): end for (t, p), end in ends.items()}


def _describe_short(day: str, short: Offsets) -> str:
    parts = ", ".join(f"{key} {missing:,} records" for key, missing in sorted(short.items())[:4])
    more = f" and {len(short) - 4} more partitions" if len(short) > 4 else ""
    return f"{day} waits for the raw layer: {parts}{more} short of its fence"


@dg.sensor(
    name="complete_days_sensor",
    jobs=[daily_warehouse_job, latest_marts_job],
    minimum_interval_seconds=DagsterSettings().sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Builds each day once the raw layer holds every event the broker had when the "
                "day closed (an offset fence per partition), rebuilds a day once per change "
                "when late events land, then the latest marts; records Kafka end offsets, lag "
                "and throughput on the raw-layer assets.",
)
def complete_days_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource,
                         warehouse: WarehouseResource, lake: LakeResource,
                         day_builds: DayBuildsResource) -> dg.SensorResult:
    """See the module docstring."""
    cursor = SensorCursor.parse(context.cursor)
    now = datetime.now(UTC).timestamp()
    ends = _partition_ends(context, kafka)
    totals: dict[str, int] = {}
    for key, end in (ends or {}).items():
        topic = key.rsplit(":", 1)[0]
        totals[topic] = totals.get(topic, 0) + end
    progress_rows = warehouse.rows(PROGRESS_SQL, {"topics": list(RAW_TOPICS)})
    observations, kept_offsets = _topic_observations(
        context, cursor, totals, {row["topic"]: row for row in progress_rows}, now)
    raw_progress = {partition_key(r["topic"], r["kafka_partition"]): int(r["next_offset"])
                    for r in warehouse.rows(RAW_PROGRESS_SQL)}
    files = {topic: lake.raw_files(topic) for topic in RAW_TOPICS}
    versions = day_versions(files)
    fences = dict(cursor.fences)
    built = dict(cursor.built)

    def fence_now(day: str) -> None:
        if day in fences:
            return
        if ends is None:
            context.log.warning(f"{day}: Kafka unreachable; fenced at the raw layer's progress")
        fences[day] = dict(raw_progress if ends is None else ends)

    # Late data: a built day whose raw layer changed gets a new fence.
    for day, version in built.items():
        current = versions.get(date.fromisoformat(day))
        if current is not None and combined_version(current) != version:
            fence_now(day)
    # New days: fenced when the stream's event time closes them.
    stream_time = warehouse.scalar(STREAM_TIME_SQL)
    first_day = min(versions) if versions else None
    earliest = date.fromisoformat(daily_partitions.start.strftime("%Y-%m-%d"))
    closed = days_closed(cursor.next_day or first_day, last_closed_day(
        stream_time, timedelta(minutes=day_builds.day_close_delay_minutes)), earliest)
    for closed_day in closed[:day_builds.max_days_per_tick]:
        fence_now(closed_day.isoformat())

    requests: list[dg.RunRequest] = []
    next_day = cursor.next_day or (closed[0] if closed else None)
    waiting: list[str] = []
    rebuilt: list[str] = []
    for day in sorted(fences):
        if len(requests) >= day_builds.max_days_per_tick:
            break
        short = short_of_fence(fences[day], raw_progress, ends or {})
        if short:
            waiting.append(_describe_short(day, short))
            if day not in built:
                break  # first builds go in day order
            continue
        the_day = date.fromisoformat(day)
        current = versions.get(the_day, {})
        rebuild = day in built
        version = combined_version(current)
        del fences[day]
        if rebuild and built[day] == version:
            continue  # changed and changed back: nothing to do
        built[day] = version
        requests.append(dg.RunRequest(
            job_name=daily_warehouse_job.name, run_key=run_key(the_day, version if rebuild
                                                                else None),
            partition_key=day, tags={"globalmart/trigger": "complete_days_sensor",
                                     "globalmart/reason": "late data" if rebuild else "new day"}))
        observations.extend(_partition_observations(files, current, the_day, rebuild))
        if rebuild:
            rebuilt.append(day)
        elif next_day is None or the_day >= next_day:
            next_day = the_day + timedelta(days=1)
    latest = max(built) if built else None
    if rebuilt and latest is not None and latest not in {r.partition_key for r in requests}:
        changed = hashlib.sha256(json.dumps([(d, built[d]) for d in rebuilt]).encode())
        requests.append(dg.RunRequest(
            job_name=latest_marts_job.name, partition_key=latest,
            run_key=f"{latest_marts_job.name}:{latest}:{changed.hexdigest()[:16]}",
            tags={"globalmart/trigger": "complete_days_sensor", "globalmart/reason": "late data"}))

    new_cursor = SensorCursor(next_day=next_day, offsets=kept_offsets,
                              observed_at=now if ends is not None else cursor.observed_at,
                              fences=fences, built=built)
    skip = None
    if not requests:
        skip = ("; ".join(waiting) if waiting else
                f"no day to build: stream event time {stream_time or 'unknown'}, next day "
                f"{new_cursor.next_day or 'the first day in the raw layer'}")
    return dg.SensorResult(run_requests=requests, skip_reason=skip, asset_events=observations,
                           cursor=new_cursor.dump())


SENSORS = [complete_days_sensor]
