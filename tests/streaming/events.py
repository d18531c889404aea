"""Hand-built events and Kafka record batches for the streaming tests."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from streaming.transforms.parse import kafka_records

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
_offsets = itertools.count()


def at(seconds: float = 0, minutes: float = 0) -> str:
    """ISO time ``seconds``/``minutes`` after T0."""
    return (T0 + timedelta(seconds=seconds, minutes=minutes)).isoformat().replace("+00:00", "Z")


def _money(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def transaction(total: Any = None, items: list[dict] | None = None, user: str = "u1",
                time: str | None = None, country: str = "USA", txid: str | None = None,
                **extra: Any) -> dict:
    """A valid transaction; ``total`` defaults to Σ lines."""
    items = [line()] if items is None else items
    if total is None:
        total = sum(Decimal(str(i["unit_price"])) * i["quantity"] for i in items)
    event = {
        "event_id": str(uuid.uuid4()), "event_time": time or at(), "schema_version": 1,
        "transaction_id": txid or f"tx-{uuid.uuid4().hex[:12]}", "user_id": user,
        "session_id": f"s-{user}", "country": country, "city": "Chicago",
        "payment_method": "credit_card", "currency": "USD",
        "items": items, "total_amount": _money(total),
    }
    event.update(extra)
    return event


def line(product: str = "p1", category: str = "Books", quantity: int = 1,
         unit_price: Any = 10) -> dict:
    """A line item."""
    return {"product_id": product, "category": category, "quantity": quantity,
            "unit_price": _money(unit_price)}


def view(user: str = "u1", time: str | None = None, session: str | None = None,
         **extra: Any) -> dict:
    """A valid product view."""
    event = {"event_id": str(uuid.uuid4()), "event_time": time or at(), "schema_version": 1,
             "user_id": user, "session_id": session or f"s-{user}", "product_id": "p1",
             "category": "Books", "duration_seconds": 30, "device": "mobile", "country": "USA"}
    event.update(extra)
    return event


def cart(action: str = "add", user: str = "u1", time: str | None = None,
         session: str | None = None, **extra: Any) -> dict:
    """A valid cart event."""
    event = {"event_id": str(uuid.uuid4()), "event_time": time or at(), "schema_version": 1,
             "user_id": user, "session_id": session or f"s-{user}", "product_id": "p1",
             "action": action, "quantity": 1}
    event.update(extra)
    return event


def stock(kind: str = "restock", delta: int = 10, product: str = "p1",
          time: str | None = None) -> dict:
    """A valid inventory event."""
    return {"event_id": str(uuid.uuid4()), "event_time": time or at(), "schema_version": 1,
            "product_id": product, "kind": kind, "quantity_delta": delta}


def record(topic: str, payload: dict | str | bytes, partition: int = 0) -> tuple:
    """One Kafka record: (topic, partition, offset, value bytes)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return (topic, partition, next(_offsets), payload)


def records(rows: list[tuple]) -> pa.Table:
    """A micro-batch of Kafka records, as the stream collects it."""
    return kafka_records(rows)


def topic_batch(topic: str, events: list[dict]) -> pa.Table:
    """A micro-batch of ``events`` on ``topic``."""
    return records([record(topic, e) for e in events])
