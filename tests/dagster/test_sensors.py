"""The complete-days sensor in each cursor state, against the real broker fixture, real
PostgreSQL and a tmp lake: no data, a day closed but its fence not reached, a new day complete,
a day still open, catching up, late events for a built day (rebuilt once, then the latest
marts), and a broker that lost its topics or does not answer."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from confluent_kafka import Producer

from globalmart.embedded import EmbeddedBroker, free_port
from globalmart.kafka import end_offsets, ensure_topics
from globalmart_dagster.constants import RAW_TOPICS
from globalmart_dagster.definitions import build_definitions
from globalmart_dagster.defs.sensors import SensorCursor, complete_days_sensor
from tests.conftest import delete_topics
from tests.dagster.conftest import DAY, make_resources
from tests.dagster.dataset import build_day, write_raw_layer

MIDNIGHT = datetime.combine(DAY + timedelta(days=1), time(), tzinfo=UTC)


class Scene:
    """Database, lake and broker of one test, and a way to tick the sensor."""

    def __init__(self, url: str, lake: Path, broker: EmbeddedBroker) -> None:
        self.url = url
        self.lake = lake
        self.broker = broker
        self.batch = 0

    def produce(self, topic: str, count: int) -> None:
        ensure_topics(self.broker.bootstrap_servers, list(RAW_TOPICS))
        producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers})
        for n in range(count):
            producer.produce(topic, key=f"k{n}".encode(), value=b"{}")
        assert producer.flush(15) == 0

    def catch_up(self, short: int = 0, to: dict[str, int] | None = None) -> None:
        """The raw layer's progress at the broker's end offsets (``short`` records below them on
        one partition of transactions), or at ``to`` (offsets by "topic:partition")."""
        ends = end_offsets(self.broker.bootstrap_servers, list(RAW_TOPICS))
        if to is not None:
            ends = {(k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])): v for k, v in to.items()}
        lagging = max((key for key in ends if key[0] == "transactions"), key=ends.get,
                      default=None)
        with psycopg.connect(self.url) as conn:
            for (topic, partition), end in ends.items():
                behind = short if (topic, partition) == lagging else 0
                conn.execute(
                    "INSERT INTO public.raw_progress (topic, kafka_partition, next_offset) "
                    "VALUES (%s, %s, %s) ON CONFLICT (topic, kafka_partition) "
                    "DO UPDATE SET next_offset = EXCLUDED.next_offset",
                    (topic, partition, end - behind))

    def stream_progress(self, max_event_time: datetime, topic: str = "transactions",
                        lag: int = 7, query_name: str = "raw") -> None:
        """A micro-batch of the streaming app as its metrics listener records it."""
        self.batch += 1
        with psycopg.connect(self.url) as conn:
            conn.execute(
                "INSERT INTO public.pipeline_metrics (query_name, batch_id, topic, processed_at, "
                "input_rows, input_rows_per_second, processed_rows_per_second, "
                "batch_duration_ms, lag_records, rows_written, max_event_time) "
                "VALUES (%s, %s, %s, now(), 10, 5.0, 12.5, 800, %s, 10, %s)",
                (query_name, self.batch, topic, lag, max_event_time))

    def tick(self, cursor: str | None) -> dg.SensorResult:
        resources = make_resources(self.url, self.lake, self.broker.bootstrap_servers)
        defs = build_definitions(resources)
        with dg.build_sensor_context(cursor=cursor, definitions=defs, resources=resources,
                                     sensor_name="complete_days_sensor",
                                     instance=dg.DagsterInstance.ephemeral()) as context:
            return complete_days_sensor.evaluate_tick(context)


@pytest.fixture
def scene(make_database, tmp_path: Path, broker: EmbeddedBroker) -> Scene:
    return Scene(make_database(), tmp_path / "lake", broker)


def with_raw_days(scene: Scene, *days: date) -> None:
    for day in days:
        write_raw_layer(scene.lake, build_day(day, transactions=5, users=5, products=4))


def requested(result) -> list[tuple[str, str]]:
    return [(r.partition_key, r.run_key) for r in result.run_requests or []]


def observations(result, **where) -> list[dg.AssetObservation]:
    return [e for e in result.asset_events if isinstance(e, dg.AssetObservation)
            and all(getattr(e, k) == v for k, v in where.items())]


def test_no_data_requests_nothing_and_keeps_the_initial_cursor(scene: Scene):
    result = scene.tick(None)
    assert requested(result) == []
    assert SensorCursor.parse(result.cursor).next_day is None
    assert observations(result) == []


def test_a_closed_day_waits_for_its_fence_then_is_requested(scene: Scene):
    with_raw_days(scene, DAY)
    scene.produce("transactions", 25)
    scene.catch_up(short=4)  # four records the broker held at the close are not in the lake
    scene.stream_progress(MIDNIGHT + timedelta(minutes=10))
    waiting = scene.tick(None)
    assert requested(waiting) == []
    assert "4 records short of its fence" in waiting.skip_message
    fence = SensorCursor.parse(waiting.cursor).fences[DAY.isoformat()]
    assert sum(v for k, v in fence.items() if k.startswith("transactions:")) == 25
    scene.produce("transactions", 10)  # after the close: not part of the fence
    scene.catch_up(to=fence)
    ready = scene.tick(waiting.cursor)
    assert requested(ready) == [(DAY.isoformat(), f"daily_warehouse_job:{DAY.isoformat()}")]
    assert SensorCursor.parse(ready.cursor).fences == {}


def test_new_day_complete_is_requested_once(scene: Scene):
    with_raw_days(scene, DAY)
    scene.produce("transactions", 25)
    scene.catch_up()
    scene.stream_progress(MIDNIGHT + timedelta(minutes=10))
    first = scene.tick(None)
    assert requested(first) == [(DAY.isoformat(), f"daily_warehouse_job:{DAY.isoformat()}")]
    cursor = SensorCursor.parse(first.cursor)
    assert cursor.next_day == DAY + timedelta(days=1)
    assert cursor.offsets["transactions"] == 25
    topic_obs = observations(first, asset_key=dg.AssetKey(["raw", "transactions"]), partition=None)
    assert topic_obs[0].metadata["end_offset"].value == 25
    assert topic_obs[0].metadata["lag_records"].value == 7
    assert topic_obs[0].metadata["processed_rows_per_second"].value == 12.5
    day_obs = observations(first, partition=DAY.isoformat())
    assert {o.asset_key.path[-1] for o in day_obs} == set(RAW_TOPICS)
    assert all(o.metadata["files"].value == 1 for o in day_obs)

    scene.produce("transactions", 15)
    scene.catch_up()
    second = scene.tick(first.cursor)
    assert requested(second) == []  # never twice
    assert SensorCursor.parse(second.cursor).next_day == DAY + timedelta(days=1)
    throughput = observations(second, asset_key=dg.AssetKey(["raw", "transactions"]))[0]
    assert throughput.metadata["produced_since_last_tick"].value == 15
    assert throughput.metadata["produced_per_second"].value > 0


def test_day_still_open_is_not_requested(scene: Scene):
    with_raw_days(scene, DAY)
    scene.stream_progress(datetime.combine(DAY, time(15), tzinfo=UTC))
    result = scene.tick(None)
    assert requested(result) == []
    assert SensorCursor.parse(result.cursor).next_day is None
    # past midnight but within the grace delay (5 minutes): still open
    scene.stream_progress(MIDNIGHT + timedelta(minutes=2))
    cursor = SensorCursor(next_day=DAY).dump()
    result = scene.tick(cursor)
    assert requested(result) == []
    assert SensorCursor.parse(result.cursor).next_day == DAY


def test_only_the_raw_layer_queries_close_a_day(scene: Scene):
    """Another query (sessions, anomalies) past midnight does not mean the raw layer is."""
    with_raw_days(scene, DAY)
    scene.stream_progress(datetime.combine(DAY, time(15), tzinfo=UTC))
    scene.stream_progress(MIDNIGHT + timedelta(hours=1), query_name="sessions")
    result = scene.tick(SensorCursor(next_day=DAY).dump())
    assert requested(result) == []


def test_catching_up_requests_each_missing_day_in_order(scene: Scene, monkeypatch):
    monkeypatch.setenv("GLOBALMART_DAGSTER_MAX_DAYS_PER_TICK", "2")
    start = DAY - timedelta(days=2)
    with_raw_days(scene, start, DAY - timedelta(days=1), DAY)
    scene.produce("transactions", 5)
    scene.catch_up()
    scene.stream_progress(MIDNIGHT + timedelta(hours=1))
    first = scene.tick(None)  # initial cursor: starts at the first day in the raw layer
    second = scene.tick(first.cursor)
    third = scene.tick(second.cursor)
    days = [p for r in (first, second, third) for p, _ in requested(r)]
    assert days == [(start + timedelta(days=n)).isoformat() for n in range(3)]
    assert len({k for r in (first, second) for _, k in requested(r)}) == 3
    assert SensorCursor.parse(third.cursor).next_day == DAY + timedelta(days=1)


def test_broker_that_lost_its_topics_is_reported_and_days_stay_requested(scene: Scene):
    with_raw_days(scene, DAY)
    scene.produce("transactions", 30)
    scene.catch_up()
    scene.stream_progress(MIDNIGHT + timedelta(minutes=30))
    before = scene.tick(None)
    assert len(requested(before)) == 1

    # the topic is deleted and created again (a broker that lost its data looks the same)
    delete_topics(scene.broker.bootstrap_servers)
    scene.produce("transactions", 4)
    after = scene.tick(before.cursor)
    assert requested(after) == []
    obs = observations(after, asset_key=dg.AssetKey(["raw", "transactions"]))[0]
    assert obs.metadata["topic_reset"].value is True
    assert obs.metadata["end_offset"].value == 4
    cursor = SensorCursor.parse(after.cursor)
    assert cursor.next_day == DAY + timedelta(days=1) and cursor.offsets["transactions"] == 4


def test_cursor_round_trips_through_json():
    cursor = SensorCursor(next_day=DAY, offsets={"transactions": 3}, observed_at=1.5)
    assert SensorCursor.parse(cursor.dump()) == cursor
    assert json.loads(cursor.dump())["next_day"] == DAY.isoformat()


def test_broker_down_still_builds_the_days_the_stream_passed(make_database, tmp_path: Path):
    scene = Scene(make_database(), tmp_path / "lake", EmbeddedBroker(free_port(), tmp_path))
    with_raw_days(scene, DAY)
    scene.stream_progress(MIDNIGHT + timedelta(minutes=10))
    result = scene.tick(None)  # nothing listens on the broker's port: fenced at the raw layer
    assert requested(result) == [(DAY.isoformat(), f"daily_warehouse_job:{DAY.isoformat()}")]
    assert SensorCursor.parse(result.cursor).offsets == {}


def add_late_file(scene: Scene, day: date) -> None:
    """Late events of ``day`` reach the raw layer: the stream adds a file."""
    staging = scene.lake.parent / "late"
    write_raw_layer(staging, build_day(day, transactions=2, users=2, products=2))
    for topic in RAW_TOPICS:
        folder = f"event_date={day.isoformat()}"
        (staging / "raw" / topic / folder / "part-00000.parquet").rename(
            scene.lake / "raw" / topic / folder / "part-0000000100-0000000100.parquet")


def test_late_events_for_a_built_day_rebuild_it_once_then_the_latest_marts(scene: Scene):
    before = DAY - timedelta(days=1)
    with_raw_days(scene, before, DAY)
    scene.produce("transactions", 5)
    scene.catch_up()
    scene.stream_progress(MIDNIGHT + timedelta(hours=1))
    built = scene.tick(None)
    assert [p for p, _ in requested(built)] == [before.isoformat(), DAY.isoformat()]

    add_late_file(scene, before)
    scene.produce("transactions", 3)  # the replay, still on its way to the lake
    scene.catch_up(short=3)
    waiting = scene.tick(built.cursor)
    assert requested(waiting) == []
    assert before.isoformat() in waiting.skip_message

    scene.catch_up()
    rebuilt = scene.tick(waiting.cursor)
    runs = [(r.job_name, r.partition_key, r.run_key) for r in rebuilt.run_requests]
    version = SensorCursor.parse(rebuilt.cursor).built[before.isoformat()]
    assert version != SensorCursor.parse(built.cursor).built[before.isoformat()]
    assert runs[0] == ("daily_warehouse_job", before.isoformat(),
                       f"daily_warehouse_job:{before.isoformat()}:{version}")
    assert runs[1][:2] == ("latest_marts_job", DAY.isoformat())
    assert len(runs) == 2
    stale = observations(rebuilt, partition=before.isoformat())
    assert {o.asset_key.path[-1] for o in stale} == set(RAW_TOPICS)
    assert all(o.tags["dagster/data_version"] for o in stale)
    assert all(o.metadata["late_data"].value for o in stale)

    again = scene.tick(rebuilt.cursor)  # nothing changed since: no second rebuild
    assert requested(again) == []
