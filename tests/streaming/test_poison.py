"""No single record stops the stream: records of every class that once stopped it for good,
produced straight to the broker between ordinary events, against the running application on
real Kafka and PostgreSQL. The application keeps going, each bad record is in the dead letter
with its reason, and every other event is counted exactly (the truth: the good events this test
produced)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka import Producer

from globalmart.contracts import INPUT_TOPICS
from globalmart.kafka import ensure_topics
from globalmart.settings import PlatformSettings
from streaming.app import serve
from streaming.config import StreamingSettings
from tests.streaming.events import cart, line, stock, transaction, view

pytestmark = pytest.mark.slow


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def poison(now: datetime) -> dict[str, tuple[str, bytes]]:
    """One record of each class, by name: (topic, bytes)."""
    def tx(**extra) -> bytes:
        return json.dumps(transaction(time=iso(now), **extra)).encode()

    first = transaction(items=[line("p1", "Books", 1, "10")], time=iso(now))
    return {
        "time beyond pandas": ("transactions", tx(event_time="9999-12-31T23:59:59Z")),
        "time before pandas": ("transactions", tx(event_time="0001-01-01T00:00:00Z")),
        "far future time": ("transactions", tx(event_time=iso(now + timedelta(days=3650)))),
        "NUL in a string": ("transactions", tx(user_id="u\u0000x")),
        "NUL quoted by the reason": ("transactions", json.dumps(transaction(time=iso(now)) | {
            "event_id": "01234567\u0000abcd-4def-8abc-0123456789ab"}).encode()),
        "control character": ("product_views", json.dumps(view(
            time=iso(now), category="Bo\u0007oks")).encode()),
        "line revenue beyond numeric(14,2)": ("transactions", tx(
            items=[line("p1", "Books", 1000, "9999999999.99")])),
        "stock delta beyond int32": ("inventory_events", json.dumps(
            stock(delta=2**31, time=iso(now))).encode()),
        "string quantity": ("cart_events", json.dumps(cart(time=iso(now),
                                                            quantity="2")).encode()),
        "boolean quantity": ("cart_events", json.dumps(cart(time=iso(now),
                                                             quantity=True)).encode()),
        "integer event_time": ("product_views", json.dumps(view(time=iso(now)) | {
            "event_time": int(now.timestamp())}).encode()),
        "dead letter beyond a Kafka message": (
            "transactions", ('{"junk": "' + "\u0001" * 300_000 + '"}').encode()),
        "conflicting duplicate": ("transactions", json.dumps(
            first | {"items": [line("p1", "Books", 1, "99")]}).encode()),
        "_first": ("transactions", json.dumps(first).encode()),
    }


def test_bad_records_of_every_class_go_to_the_dead_letter_and_the_rest_counts(
        spark, make_database, broker, tmp_path) -> None:
    db = make_database()
    bootstrap = broker.bootstrap_servers
    ensure_topics(bootstrap, list(INPUT_TOPICS))
    now = datetime.now(UTC).replace(microsecond=0)
    bad = poison(now)
    first = bad.pop("_first")
    good = [transaction(items=[line(f"p{n}", "Books", 1 + n % 3, f"{n}.25")],
                        time=iso(now - timedelta(seconds=n))) for n in range(1, 71)]
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    positions: dict[str, tuple[str, int, int]] = {}

    def sent(name: str):
        def record(err, message) -> None:
            assert err is None, err
            positions[name] = (message.topic(), message.partition(), message.offset())
        return record

    producer.produce(first[0], first[1], key=b"u1", on_delivery=sent("_first"))
    producer.flush(10)  # the first copy is first, so the other is the conflicting one
    for n, event in enumerate(good):
        producer.produce("transactions", json.dumps(event).encode(), key=event["user_id"].encode())
        if n % 5 == 0 and bad:
            name, (topic, payload) = bad.popitem()
            producer.produce(topic, payload, key=b"u1", on_delivery=sent(name))
    assert not bad and producer.flush(30) == 0
    platform = PlatformSettings(database_url=db, kafka_bootstrap_servers=bootstrap,
                                lake_path=str(tmp_path / "lake"))
    settings = StreamingSettings(trigger_interval="1 second", max_offsets_per_trigger=20)
    assert serve(spark, settings, platform, threading.Event(), available_now=True) == 0

    with psycopg.connect(db) as conn:
        dead = {(t, p, o): r for t, p, o, r in conn.execute(
            "SELECT topic, kafka_partition, kafka_offset, reason FROM dead_letter")}
        orders = conn.execute("SELECT sum(order_count), sum(revenue) FROM order_metrics"
                              ).fetchone()
    expected = {name: where for name, where in positions.items() if name != "_first"}
    assert set(dead) == set(expected.values()), (dead, expected)
    assert all(dead[where] for where in expected.values())
    assert "conflicting duplicate" in dead[expected["conflicting duplicate"]]
    assert "valid UUID" in dead[expected["NUL quoted by the reason"]]  # the validator's reason
    truth = [*good, json.loads(first[1])]
    assert orders == (len(truth), sum(
        (Decimal(str(i["unit_price"])) * i["quantity"] for t in truth for i in t["items"]),
        Decimal("0.00")))
    quarantined = list((tmp_path / "lake" / "quarantine").rglob("*.txt"))
    assert len(quarantined) == 1 and quarantined[0].stat().st_size > 300_000
