"""The ``globalmart_kafka`` Spark source and the true-log-end helper, on a real Tansu broker
and a real local Spark session.

Tansu reports the base offset of a partition's last record batch + 1 as its log end, so every
producer here batches (linger) to make the last batch large: a source that trusted the reported
end would stall before the final batch, and these tests would fail.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import strategies as st

from globalmart.embedded import EmbeddedBroker
from globalmart.kafka import LogProbe, ensure_topics, true_end_offsets
from streaming.kafka_source import (
    KafkaSourceError,
    KafkaSourceOptions,
    KafkaStreamReader,
    OffsetRange,
    decode_offsets,
    encode_offsets,
    plan_input_partitions,
    proportional_shares,
    read_ranges,
    register_kafka_source,
)

TOPICS = ("transactions", "product_views")
DEADLINE_S = 90.0

Record = tuple[str, int, int, bytes]  # topic, partition, offset, value


def produce(bootstrap: str, topics: tuple[str, ...], count: int, tag: str) -> set[Record]:
    """Produce ``count`` records spread over ``topics`` in large batches; return what the
    broker acknowledged (topic, partition, offset, value)."""
    delivered: set[Record] = set()

    def on_delivery(err, msg) -> None:
        assert err is None, err
        delivered.add((msg.topic(), msg.partition(), msg.offset(), msg.value()))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200,
                         "batch.num.messages": 100_000})
    for i in range(count):
        producer.produce(topics[i % len(topics)], key=f"k{i}".encode(),
                         value=f"{tag}-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(delivered) == count
    return delivered


def wait_for(condition: Callable[[], bool], what: str, query=None,
             deadline_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` at the deadline, or at once if the
    streaming query died."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if query is not None and query.exception() is not None:
            raise AssertionError(f"query failed while waiting for {what}: {query.exception()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.1)


class BatchCollector:
    """A foreachBatch sink keeping each micro-batch's rows by batch id (a replayed batch
    replaces its earlier copy, as an idempotent sink would)."""

    def __init__(self) -> None:
        self.batches: dict[int, list[Record]] = {}

    def __call__(self, frame, batch_id: int) -> None:
        rows = frame.select("topic", "partition", "offset", "value").collect()
        self.batches[batch_id] = [(r.topic, r.partition, r.offset, bytes(r.value)) for r in rows]

    def records(self) -> list[Record]:
        return [row for _, rows in sorted(self.batches.items()) for row in rows]

    def sizes(self) -> list[int]:
        return [len(rows) for _, rows in sorted(self.batches.items())]


@pytest.fixture
def kafka_stream(spark, tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Factory: start a stream from the source into a collector; every query is stopped at
    the end of the test."""
    register_kafka_source(spark)
    started = []

    def start(bootstrap: str, collector: BatchCollector, checkpoint: Path | None = None,
              available_now: bool = False, **options: str):
        reader = (spark.readStream.format("globalmart_kafka")
                  .option("kafka.bootstrap.servers", bootstrap)
                  .option("subscribe", ",".join(TOPICS)))
        for key, value in options.items():
            reader = reader.option(key, value)
        writer = (reader.load().writeStream.foreachBatch(collector)
                  .option("checkpointLocation", str(checkpoint or tmp_path / "checkpoint")))
        writer = (writer.trigger(availableNow=True) if available_now
                  else writer.trigger(processingTime="200 milliseconds"))
        query = writer.start()
        started.append(query)
        return query

    yield start
    for query in started:
        query.stop()


# --- pure parts ---------------------------------------------------------------------------

@given(st.dictionaries(st.tuples(st.sampled_from(TOPICS), st.integers(0, 5)),
                       st.integers(0, 100_000), max_size=12),
       st.integers(1, 50_000))
def test_proportional_shares_split_the_budget_by_backlog(available, budget):
    shares = proportional_shares(available, budget)
    assert set(shares) == set(available)
    assert all(0 <= shares[k] <= available[k] for k in available)
    total = sum(available.values())
    assert sum(shares.values()) == min(budget, total)
    if budget >= total:
        assert shares == available
        return
    quotas = {k: Fraction(budget * n, total) for k, n in available.items()}
    small = sum(1 for q in quotas.values() if 0 < q < 1)  # may be raised to 1 record
    for key, quota in quotas.items():
        # proportional within rounding; a partition may give up to one record to each small
        # partition raised from 0 to 1
        assert math.floor(quota) - small <= shares[key] <= math.ceil(quota)
        if small == 0:
            assert abs(shares[key] - quota) < 1
    with_data = [k for k, n in available.items() if n > 0]
    if budget >= len(with_data):  # nobody with records is starved while the budget allows it
        assert all(shares[k] >= 1 for k in with_data)
    for a in available:  # a bigger backlog never gets a smaller share (beyond rounding)
        for b in available:
            if available[a] >= available[b]:
                assert shares[a] >= shares[b] - 1


def test_proportional_shares_keep_partitions_together_while_catching_up():
    # max-min fair shares gave 5,000 each: the small partition was read at once while the big
    # one lagged 95 % behind, i.e. far apart in event time
    big, small = ("transactions", 0), ("transactions", 1)
    backlog = {big: 100_000, small: 1_000}
    shares = proportional_shares(backlog, 10_000)
    assert shares == {big: 9_901, small: 99}
    assert abs(shares[big] / backlog[big] - shares[small] / backlog[small]) <= 1 / 1_000
    # batch after batch, both advance by the same fraction and finish in the same batch
    read = dict.fromkeys(backlog, 0)
    batches = 0
    while read != backlog:
        step = proportional_shares({k: backlog[k] - read[k] for k in backlog}, 10_000)
        read = {k: read[k] + step[k] for k in backlog}
        batches += 1
        assert abs(read[big] / backlog[big] - read[small] / backlog[small]) <= 2 / 1_000
    assert batches == 11  # ceil(101,000 / 10,000)


def test_proportional_shares_round_deterministically_and_starve_nobody():
    a, b, c = ("product_views", 0), ("transactions", 0), ("transactions", 1)
    # equal fractional parts: the remainder goes in topic/partition order
    assert proportional_shares({c: 10, b: 10, a: 10}, 2) == {a: 1, b: 1, c: 0}
    # 10 x 1/1,000,002 rounds to 0; the small partitions still get one record each
    assert proportional_shares({a: 1_000_000, b: 1, c: 1}, 10) == {a: 8, b: 1, c: 1}
    # a budget below the number of partitions goes to the largest backlogs
    assert proportional_shares({a: 5, b: 1_000, c: 1}, 1) == {a: 0, b: 1, c: 0}
    assert proportional_shares({a: 5, b: 1_000, c: 1}, 2) == {a: 1, b: 1, c: 0}
    assert proportional_shares({a: 0, b: 3, c: -2}, 100) == {a: 0, b: 3, c: 0}


def test_offsets_round_trip_through_the_checkpoint_form():
    offsets = {("transactions", 0): 5, ("transactions", 2): 0, ("product_views", 1): 42}
    encoded = encode_offsets(offsets)
    assert encoded == {"product_views": {"1": 42}, "transactions": {"0": 5, "2": 0}}
    assert decode_offsets(encoded) == offsets


def test_one_input_partition_per_kafka_partition_with_records():
    start = {("t", 0): 10, ("t", 1): 5, ("t", 2): 7, ("u", 0): 0}
    end = {("t", 0): 20, ("t", 1): 5, ("t", 2): 3, ("u", 0): 4, ("u", 1): 9}  # u1: new
    planned = plan_input_partitions(start, end)
    assert [p.ranges for p in planned] == [(OffsetRange("t", 0, 10, 20),),
                                           (OffsetRange("u", 0, 0, 4),)]


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=12), st.integers(1, 4))
def test_grouped_input_partitions_cover_every_range_once_and_balance(sizes, groups):
    start = {("t", i): 0 for i in range(len(sizes))}
    end = {("t", i): n for i, n in enumerate(sizes)}
    planned = plan_input_partitions(start, end, groups)
    assert len(planned) == min(groups, len(sizes))
    ranges = [r for p in planned for r in p.ranges]
    assert sorted(ranges, key=lambda r: r.partition) == [
        OffsetRange("t", i, 0, n) for i, n in enumerate(sizes)]
    loads = [sum(r.size for r in p.ranges) for p in planned]
    assert max(loads) - min(loads) <= max(sizes)  # greedy balance bound


@pytest.mark.parametrize("options, message", [
    ({"subscribe": "a"}, "kafka.bootstrap.servers is required"),
    ({"kafka.bootstrap.servers": "h:1"}, "subscribe"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "a", "maxOffsetsPerTrigger": "0"},
     "maxOffsetsPerTrigger must be a positive integer"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "a", "startingOffsets": "newest"},
     "startingOffsets must be"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "a", "includeHeaders": "true"},
     "unknown option(s) ['includeheaders']"),
    ({"kafka.bootstrap.servers": "h:1", "subscribe": "a", "endingOffsets": "latest"},
     "endingOffsets is for batch reads only"),
])
def test_bad_options_are_refused_with_the_reason(options, message):
    with pytest.raises(KafkaSourceError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        KafkaSourceOptions.parse(options, stream=True)


def test_options_parse_names_case_insensitively_and_pass_kafka_settings_through():
    options = KafkaSourceOptions.parse({
        "kafka.bootstrap.servers": "h:1", "subscribe": "a, b,a", "STARTINGOFFSETS": "earliest",
        "maxOffsetsPerTrigger": "100", "kafka.security.protocol": "PLAINTEXT"}, stream=True)
    assert options.topics == ("a", "b")
    assert options.starting_offsets == "earliest"
    assert options.max_offsets_per_trigger == 100
    assert options.kafka_config == {"security.protocol": "PLAINTEXT"}


# --- true log ends ---------------------------------------------------------------------------

def _ends_of(records: set[Record]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for topic, partition, offset, _ in records:
        ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
    return ends


def test_true_end_offsets_find_the_end_the_broker_under_reports(broker):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 6000, "a")
    expected = _ends_of(records)
    with LogProbe(broker.bootstrap_servers) as probe:
        reported = probe.reported_end_offsets(expected)
    # the scenario this guards against: Tansu's reported end lags the true end
    assert any(reported[key] < end for key, end in expected.items())

    assert true_end_offsets(broker.bootstrap_servers, [*TOPICS, "not_there"]) == expected


def test_probe_follows_appends_and_skips_unchanged_partitions(broker):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 3000, "a")
    with LogProbe(broker.bootstrap_servers) as probe:
        partitions = probe.partitions_of(TOPICS)
        assert probe.end_offsets(partitions) == _ends_of(records)
        records |= produce(broker.bootstrap_servers, TOPICS[:1], 500, "b")
        assert probe.end_offsets(partitions) == _ends_of(records)
        assert probe.start_offsets(partitions) == dict.fromkeys(partitions, 0)


def test_a_planner_probe_takes_a_growing_log_at_its_reported_end_then_finds_the_true_end(broker):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 3000, "a")
    with LogProbe(broker.bootstrap_servers) as probe:
        partitions = probe.partitions_of(TOPICS)
        first = probe.end_offsets(partitions, exact=False)
        assert first == _ends_of(records)  # a partition seen for the first time is resolved
        records |= produce(broker.bootstrap_servers, TOPICS[:1], 3000, "b")
        true_ends = _ends_of(records)
        growing = probe.end_offsets(partitions, exact=False)
        assert all(first[key] < growing[key] <= true_ends[key]
                   for key in partitions if key[0] == TOPICS[0])
        assert any(growing[key] < true_ends[key] for key in partitions)  # Tansu under-reports
        assert {k: v for k, v in growing.items() if k[0] != TOPICS[0]} == {
            k: v for k, v in true_ends.items() if k[0] != TOPICS[0]}
        assert probe.end_offsets(partitions, exact=False) == true_ends  # it stopped growing


# --- the reader outside Spark (its planning logic and warnings) -----------------------------

def _reader(bootstrap: str, **extra: str) -> KafkaStreamReader:
    return KafkaStreamReader(KafkaSourceOptions.parse(
        {"kafka.bootstrap.servers": bootstrap, "subscribe": ",".join(TOPICS), **extra},
        stream=True))


def test_reader_waits_for_a_missing_topic_then_reads_it_from_its_start(broker, caplog):
    ensure_topics(broker.bootstrap_servers, TOPICS[:1])
    reader = _reader(broker.bootstrap_servers, startingOffsets="latest")
    caplog.set_level(logging.WARNING, logger="streaming.kafka_source")
    try:
        start = reader.initialOffset()
        assert set(start) == {TOPICS[0]}
        assert reader.latestOffset(start, reader.getDefaultReadLimit()) == start
        waits = [r for r in caplog.records if TOPICS[1] in r.getMessage()]
        assert len(waits) == 1 and "does not exist" in waits[0].getMessage()  # warned once

        ensure_topics(broker.bootstrap_servers, TOPICS[1:])
        records = produce(broker.bootstrap_servers, TOPICS[1:], 300, "late")
        registered = reader.latestOffset(start, reader.getDefaultReadLimit())
        assert registered[TOPICS[1]] == {"0": 0, "1": 0, "2": 0}
        end = reader.latestOffset(registered, reader.getDefaultReadLimit())
        assert decode_offsets(end) == {**decode_offsets(start), **_ends_of(records)}
    finally:
        reader.stop()


def test_reader_warns_and_rewinds_when_the_broker_loses_its_data(broker, tmp_path, caplog):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    produce(broker.bootstrap_servers, TOPICS, 3000, "before")
    reader = _reader(broker.bootstrap_servers, startingOffsets="earliest")
    caplog.set_level(logging.WARNING, logger="streaming.kafka_source")
    try:
        start = reader.initialOffset()
        end = reader.latestOffset(start, reader.getDefaultReadLimit())
        assert min(decode_offsets(end).values()) > 100

        broker.stop()
        assert reader.latestOffset(end, reader.getDefaultReadLimit()) == end  # unreachable
        assert any("unreachable" in r.getMessage() for r in caplog.records)

        restarted = EmbeddedBroker(broker.port, tmp_path / "restarted")
        restarted.start()
        try:
            ensure_topics(restarted.bootstrap_servers, TOPICS)
            after = produce(restarted.bootstrap_servers, TOPICS, 120, "after")
            rewound = reader.latestOffset(end, reader.getDefaultReadLimit())
            assert decode_offsets(rewound) == dict.fromkeys(decode_offsets(end), 0)
            assert reader.partitions(end, rewound) == []  # nothing of the lost log is read
            lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
            for topic in TOPICS:
                assert any(f"topic {topic!r} partitions [0, 1, 2]" in m for m in lost), lost

            final = reader.latestOffset(rewound, reader.getDefaultReadLimit())
            assert decode_offsets(final) == _ends_of(after)
        finally:
            restarted.stop()
    finally:
        reader.stop()


def test_fail_on_data_loss_turns_the_loss_into_an_error(broker, tmp_path):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    produce(broker.bootstrap_servers, TOPICS, 600, "before")
    reader = _reader(broker.bootstrap_servers, startingOffsets="earliest", failOnDataLoss="true")
    try:
        start = reader.initialOffset()
        end = reader.latestOffset(start, reader.getDefaultReadLimit())
        broker.stop()
        restarted = EmbeddedBroker(broker.port, tmp_path / "restarted")
        restarted.start()
        try:
            ensure_topics(restarted.bootstrap_servers, TOPICS)
            with pytest.raises(KafkaSourceError, match="failOnDataLoss is true"):
                reader.latestOffset(end, reader.getDefaultReadLimit())
        finally:
            restarted.stop()
    finally:
        reader.stop()


def test_read_ranges_returns_exactly_the_range_and_gives_up_on_lost_records(broker, caplog):
    ensure_topics(broker.bootstrap_servers, TOPICS[:1], partitions=1)
    records = produce(broker.bootstrap_servers, TOPICS[:1], 2000, "r")
    options = KafkaSourceOptions.parse({"kafka.bootstrap.servers": broker.bootstrap_servers,
                                        "subscribe": TOPICS[0],
                                        "kafkaConsumer.pollTimeoutMs": "3000"}, stream=True)
    batches = list(read_ranges(options, [OffsetRange(TOPICS[0], 0, 1500, 2000)]))
    rows = [row for batch in batches for row in batch.to_pylist()]
    assert [r["offset"] for r in rows] == list(range(1500, 2000))
    by_offset = {offset: value for _, _, offset, value in records}
    assert all(r["value"] == by_offset[r["offset"]] for r in rows)
    assert {r["topic"] for r in rows} == {TOPICS[0]} and {r["partition"] for r in rows} == {0}
    assert {r["timestampType"] for r in rows} == {0}  # CreateTime, as Kafka numbers it

    caplog.set_level(logging.WARNING, logger="streaming.kafka_source")
    started = time.monotonic()
    beyond = list(read_ranges(options, [OffsetRange(TOPICS[0], 0, 1990, 2500)]))
    assert sum(b.num_rows for b in beyond) == 10
    assert time.monotonic() - started < 10
    assert any("[2000, 2500)" in r.getMessage() for r in caplog.records)


def test_read_ranges_waits_while_the_broker_is_down_and_skips_only_what_it_lost(
        broker, tmp_path, caplog):
    ensure_topics(broker.bootstrap_servers, TOPICS[:1], partitions=1)
    produce(broker.bootstrap_servers, TOPICS[:1], 500, "r")
    options = KafkaSourceOptions.parse({"kafka.bootstrap.servers": broker.bootstrap_servers,
                                        "subscribe": TOPICS[0],
                                        "kafkaConsumer.pollTimeoutMs": "500"}, stream=True)
    caplog.set_level(logging.WARNING, logger="streaming.kafka_source")
    broker.stop()
    rows: list[int] = []
    reading = threading.Thread(target=lambda: rows.extend(
        b.num_rows for b in read_ranges(options, [OffsetRange(TOPICS[0], 0, 0, 500)])))
    reading.start()
    try:
        wait_for(lambda: any("unreachable" in r.getMessage() for r in caplog.records),
                 "the unreachable warning")
        assert reading.is_alive()  # it waits instead of skipping records it cannot see
    finally:
        restarted = EmbeddedBroker(broker.port, tmp_path / "restarted")
        restarted.start()
        try:
            reading.join(DEADLINE_S)
        finally:
            restarted.stop()
    assert not reading.is_alive()
    assert sum(rows) == 0  # the restarted in-memory broker has no records
    assert any("[0, 500) are gone" in r.getMessage() for r in caplog.records)


# --- through Spark --------------------------------------------------------------------------

def test_stream_reads_every_record_once_including_the_final_batch(broker, kafka_stream):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 6000, "all")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, startingOffsets="earliest")
    wait_for(lambda: len(collector.records()) >= len(records), "all records", query)
    more = produce(broker.bootstrap_servers, TOPICS, 1000, "more")
    wait_for(lambda: len(collector.records()) >= len(records) + len(more), "new records", query)

    got = collector.records()
    assert len(got) == len(set(got))
    assert set(got) == records | more


def test_grouped_input_partitions_read_every_record_once(broker, kafka_stream):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 3000, "grouped")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, available_now=True,
                         startingOffsets="earliest", maxInputPartitions="2",
                         maxOffsetsPerTrigger="1000")
    assert query.awaitTermination(DEADLINE_S)
    assert query.exception() is None
    got = collector.records()
    assert len(got) == len(set(got)) and set(got) == records


def test_max_offsets_per_trigger_bounds_every_batch(broker, kafka_stream):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 5000, "limit")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, available_now=True,
                         startingOffsets="earliest", maxOffsetsPerTrigger="1200")
    assert query.awaitTermination(DEADLINE_S)
    assert query.exception() is None
    assert collector.sizes() == [1200] * 4 + [200]
    assert set(collector.records()) == records
    # the budget is split over the six partitions in proportion to their backlogs
    first = collector.batches[min(collector.batches)]
    backlog = Counter((topic, partition) for topic, partition, _, _ in records)
    read = Counter((topic, partition) for topic, partition, _, _ in first)
    assert set(read) == set(backlog) and len(backlog) == 6
    assert all(abs(read[key] - Fraction(1200 * n, 5000)) < 1 for key, n in backlog.items())


def test_restart_from_checkpoint_loses_and_duplicates_nothing(broker, kafka_stream, tmp_path):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    checkpoint = tmp_path / "restart-checkpoint"
    first_part = produce(broker.bootstrap_servers, TOPICS, 4000, "one")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, checkpoint,
                         startingOffsets="earliest", maxOffsetsPerTrigger="500")
    wait_for(lambda: len(collector.batches) >= 2, "two batches", query)
    query.stop()  # mid-stream: most of the backlog is still unread
    assert len(collector.records()) < len(first_part)

    second_part = produce(broker.bootstrap_servers, TOPICS, 1000, "two")
    query = kafka_stream(broker.bootstrap_servers, collector, checkpoint,
                         startingOffsets="latest")  # ignored: the checkpoint decides
    expected = first_part | second_part
    wait_for(lambda: len(collector.records()) >= len(expected), "everything", query)
    got = collector.records()
    assert len(got) == len(set(got))
    assert set(got) == expected


def test_latest_start_skips_older_records(broker, kafka_stream, spark):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    produce(broker.bootstrap_servers, TOPICS, 2000, "old")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, startingOffsets="latest")
    wait_for(lambda: query.status["message"] == "Waiting for data to arrive",
             "the query to take its starting offsets", query)
    new = produce(broker.bootstrap_servers, TOPICS, 500, "new")
    wait_for(lambda: len(collector.records()) >= len(new), "new records", query)
    assert set(collector.records()) == new


def test_batch_read_returns_the_whole_topics(broker, spark):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    records = produce(broker.bootstrap_servers, TOPICS, 3000, "batch")
    register_kafka_source(spark)
    frame = (spark.read.format("globalmart_kafka")
             .option("kafka.bootstrap.servers", broker.bootstrap_servers)
             .option("subscribe", ",".join(TOPICS)).load())
    assert [f.name for f in frame.schema.fields] == [
        "key", "value", "topic", "partition", "offset", "timestamp", "timestampType"]
    rows = frame.select("topic", "partition", "offset", "value").collect()
    assert {(r.topic, r.partition, r.offset, bytes(r.value)) for r in rows} == records
    assert len(rows) == len(records)

    grouped = (spark.read.format("globalmart_kafka")
               .option("kafka.bootstrap.servers", broker.bootstrap_servers)
               .option("subscribe", ",".join(TOPICS)).option("maxInputPartitions", "2").load())
    assert frame.rdd.getNumPartitions() == 6 and grouped.rdd.getNumPartitions() == 2
    assert grouped.count() == len(records)

    ends = _ends_of(records)
    window = (spark.read.format("globalmart_kafka")
              .option("kafka.bootstrap.servers", broker.bootstrap_servers)
              .option("subscribe", TOPICS[0])
              .option("startingOffsets", json.dumps({TOPICS[0]: {"0": 100}}))
              .option("endingOffsets", json.dumps({TOPICS[0]: {"0": 150, "1": -2, "2": -2}}))
              .load())
    assert sorted(r.offset for r in window.collect()) == list(range(100, 150))
    assert ends[(TOPICS[0], 0)] > 150


def test_stream_survives_a_broker_restart_and_reads_the_new_data(broker, kafka_stream,
                                                                  tmp_path):
    ensure_topics(broker.bootstrap_servers, TOPICS)
    before = produce(broker.bootstrap_servers, TOPICS, 3000, "before")
    collector = BatchCollector()
    query = kafka_stream(broker.bootstrap_servers, collector, startingOffsets="earliest")
    wait_for(lambda: len(collector.records()) >= len(before), "the records before", query)

    broker.stop()
    restarted = EmbeddedBroker(broker.port, tmp_path / f"restarted-{uuid.uuid4().hex[:6]}")
    restarted.start()
    try:
        ensure_topics(restarted.bootstrap_servers, TOPICS)
        after = produce(restarted.bootstrap_servers, TOPICS, 300, "after")
        wait_for(lambda: {r for r in collector.records() if r[3].startswith(b"after")} == after,
                 "the records after the restart", query)
        assert query.isActive and query.exception() is None
        assert len(collector.records()) == len(before) + len(after)
    finally:
        query.stop()
        restarted.stop()
