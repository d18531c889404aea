"""Property-based fuzzing of validation (hypothesis): arbitrary bytes, and JSON shaped like the
contracts with extreme values in every field. No exception escapes a batch; every record comes
out exactly once, valid (within every bound a sink needs) or rejected with a reason; and through
the whole write path on real PostgreSQL, every record is counted once or dead-lettered once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globalmart.contracts import (
    INPUT_TOPICS,
    MAX_QUANTITY,
    MAX_STOCK_DELTA,
    MAX_TOTAL,
    MAX_UNIT_PRICE,
    Transaction,
)
from streaming.notifier import LogNotifier
from streaming.sinks.batch import BatchStats, RealtimeSink
from streaming.sinks.store import Postgres
from streaming.transforms.parse import kafka_records, validate
from tests.streaming.events import line, transaction

EXTREME_INTS = st.one_of(st.integers(-2**70, 2**70), st.sampled_from(
    [0, 1, -1, 1000, 1001, 2**31 - 1, 2**31, -2**31 - 1, 2**63, -2**63]))
EXTREME_NUMBERS = st.one_of(EXTREME_INTS, st.floats(allow_nan=False),
                            st.sampled_from([1e-9, 0.005, 99999999999.99, 1e300, -0.0]))
EXTREME_TEXT = st.one_of(st.text(max_size=80), st.sampled_from(
    ["", "\u0000", "a\u0000b", "\u0007", "\u0085", "\ud7ff", "x" * 65, "Books"]))
NOW = datetime.now(UTC)
EXTREME_TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.just(UTC)).map(lambda t: t.isoformat()),
    st.sampled_from([(NOW + timedelta(seconds=s)).isoformat()
                     for s in (-86400 * 3650 - 1, -60, 0, 299, 301, 86400 * 365)]),
    st.sampled_from(["2026-13-01T00:00:00Z", "now", "", "2026-11-20T10:00:00"]),
    EXTREME_INTS)
ANY_VALUE = st.one_of(st.none(), st.booleans(), EXTREME_NUMBERS, EXTREME_TEXT, EXTREME_TIMES)


def field_values(name: str):
    """Plausible and extreme values for a contract field."""
    if name == "event_time":
        return EXTREME_TIMES
    if name == "items":
        line = st.fixed_dictionaries({
            "product_id": EXTREME_TEXT, "category": EXTREME_TEXT,
            "quantity": st.one_of(EXTREME_INTS, ANY_VALUE),
            "unit_price": st.one_of(EXTREME_NUMBERS, ANY_VALUE)})
        return st.one_of(st.lists(line, max_size=7), ANY_VALUE)
    return st.one_of(ANY_VALUE, st.sampled_from(["USA", "add", "restock", "GBP", "mobile"]))


def contract_shaped(topic: str):
    fields = INPUT_TOPICS[topic][0].model_fields
    return st.fixed_dictionaries({}, optional={name: field_values(name) for name in fields}
                                 ).map(lambda d: json.dumps(d, default=str).encode())


def near_valid() -> st.SearchStrategy[tuple[str, bytes]]:
    """A valid transaction with one field (or one line's field) replaced by an extreme or
    wrong value: most stay valid at the edges of the bounds, the others must be refused."""
    def event(field: str, value: object, line_field: str, line_value: object) -> bytes:
        payload = transaction(time=NOW.isoformat(), items=[line(), line("p2", "Toys")])
        if field == "items":
            payload["items"][0][line_field] = line_value
        else:
            payload[field] = value
        return json.dumps(payload, default=str).encode()

    names = list(Transaction.model_fields)
    valid_edges = st.sampled_from([1, MAX_QUANTITY, 0.01, float(MAX_UNIT_PRICE), "Bo oks", "é"])
    return st.tuples(st.just("transactions"), st.builds(
        event, st.sampled_from(names), ANY_VALUE,
        st.sampled_from(["product_id", "category", "quantity", "unit_price"]),
        st.one_of(valid_edges, ANY_VALUE)))


RECORDS = st.lists(st.one_of(
    st.tuples(st.sampled_from([*INPUT_TOPICS, "elsewhere"]), st.one_of(
        st.binary(max_size=200), st.sampled_from(list(INPUT_TOPICS)).flatmap(contract_shaped))),
    near_valid()), min_size=1, max_size=30)


valid_rows: list[int] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS)
def test_every_record_comes_out_once_valid_within_bounds_or_rejected_with_a_reason(rows):
    records = kafka_records([(topic, 0, n, value) for n, (topic, value) in enumerate(rows)])
    verdicts = validate(records)
    assert len(verdicts) == len(rows)
    valid_rows.append(int(verdicts["reason"].isna().sum()))
    assert verdicts["kafka_offset"].tolist() == list(range(len(rows)))
    for _, row in verdicts.iterrows():
        if row["reason"] is not None:
            assert row["reason"] and row["event_id"] is None and pd.isna(row["event_time"])
            continue
        sent = json.loads(row["value"])
        assert row["event_id"] == str(UUID(sent["event_id"]))
        assert pd.Timestamp(row["event_time"]) == pd.Timestamp(sent["event_time"])
        assert abs(row["event_time"] - NOW) < timedelta(days=3651)
        if row["topic"] == "transactions":
            assert Decimal(str(sent["total_amount"])) == row["total_amount"] <= MAX_TOTAL
            assert [(i["product_id"], i["quantity"], Decimal(str(i["unit_price"])))
                    for i in sent["items"]] == [(i["product_id"], i["quantity"], i["unit_price"])
                                                for i in row["items"]]
            assert all(1 <= i["quantity"] <= MAX_QUANTITY and Decimal(0) < i["unit_price"]
                       <= MAX_UNIT_PRICE for i in row["items"])
        fields = {name: value for name, value in sent.items() if name not in ("event_id",
                                                                             "event_time")}
        assert all(row[name] == value for name, value in fields.items()
                   if isinstance(value, str | int) and name != "total_amount")
        assert abs(sent.get("quantity_delta", 0)) <= MAX_STOCK_DELTA
        texts = [v for v in sent.values() if isinstance(v, str)]
        assert not any(ord(c) < 32 or 127 <= ord(c) <= 159 for t in texts for c in t)


def test_the_fuzzing_reaches_valid_events_too():
    """The property above is only worth as much as the valid events it sees."""
    if not valid_rows:
        test_every_record_comes_out_once_valid_within_bounds_or_rejected_with_a_reason()
    assert sum(valid_rows) > 20  # 47 to 93 in 150 examples, measured over eight runs


@pytest.fixture(scope="module")
def fuzz_sink(make_database):
    """The realtime sink on a database of its own, shared by the examples (each writes its own
    batch and offsets)."""
    url = make_database()
    store = Postgres(url)
    yield url, RealtimeSink("realtime", store, None, LogNotifier(), BatchStats(),
                            timedelta(minutes=10), 0.8)
    store.close()


accepted_bytes: dict[tuple[str, bytes], int] = {}  # (topic, payload) -> offset, over examples
examples = iter(range(1, 1_000_000))


def _buffered(url: str, batch_id: int) -> dict[int, tuple[str, str]]:
    """The raw-layer rows a batch buffered: kafka offset -> (topic, event id)."""
    with psycopg.connect(url) as conn:
        blobs = conn.execute("SELECT topic, data FROM stream_state.raw_buffer WHERE batch_id = %s",
                             (batch_id,)).fetchall()
    rows: dict[int, tuple[str, str]] = {}
    for topic, blob in blobs:
        table = pa.ipc.open_stream(blob).read_all()
        for offset, event_id in zip(table["kafka_offset"].to_pylist(),
                                    table["event_id"].to_pylist(), strict=True):
            assert offset not in rows, "a record buffered twice"
            rows[offset] = (topic, event_id)
    return rows


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(RECORDS)
def test_the_write_path_counts_every_record_once_or_dead_letters_it_once(fuzz_sink, rows):
    """Through validation, de-duplication and the PostgreSQL writes of a real database: no
    exception escapes the batch, and each record is either dead-lettered once with a reason, or
    buffered once for the raw layer, or a byte-identical resend of an event already buffered."""
    url, sink = fuzz_sink
    batch_id = next(examples)
    base = batch_id * 1000
    records = kafka_records([(topic, 0, base + n, value) for n, (topic, value) in enumerate(rows)])
    sink.process(records, batch_id)
    with psycopg.connect(url) as conn:
        dead = dict(conn.execute(
            "SELECT kafka_offset, reason FROM dead_letter WHERE kafka_partition = 0 "
            "AND kafka_offset >= %s AND kafka_offset < %s", (base, base + 1000)).fetchall())
    buffered = _buffered(url, batch_id)
    for n, (topic, value) in enumerate(rows):
        offset = base + n
        if offset in dead:
            assert dead[offset] and offset not in buffered
            continue
        try:
            json.loads(value)
        except ValueError:
            raise AssertionError(f"no JSON, yet not dead-lettered: {value!r}") from None
        if offset in buffered:
            accepted_bytes.setdefault((topic, bytes(value)), offset)
        else:
            assert (topic, bytes(value)) in accepted_bytes, f"record {offset} vanished"
