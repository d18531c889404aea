"""Event contracts: what they accept and refuse, and their JSON Schema export."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from globalmart.contracts import (
    INPUT_TOPICS,
    Transaction,
    export_json_schemas,
    parse_event,
)

TRANSACTION = {
    "event_id": "5b0c3c1e-8f0e-4a53-9f0e-0d3d4b1d2a11",
    "event_time": "2026-11-20T10:15:00+00:00",
    "schema_version": 1,
    "transaction_id": "t-1", "user_id": "u-1", "session_id": "s-1",
    "country": "UK", "city": "Leeds", "payment_method": "paypal", "currency": "GBP",
    "items": [{"product_id": "p-1", "category": "Books", "quantity": 2, "unit_price": 12.5}],
    "total_amount": 25.0,
}


def test_a_valid_transaction_parses_with_exact_money() -> None:
    event = parse_event("transactions", json.dumps(TRANSACTION))

    assert isinstance(event, Transaction)
    assert event.total_amount == Decimal("25.00")
    assert event.lines_total == Decimal("25.00")


def test_a_total_mismatch_is_valid_input() -> None:
    event = parse_event("transactions", json.dumps({**TRANSACTION, "total_amount": 99.99}))

    assert isinstance(event, Transaction)
    assert event.total_amount != event.lines_total


@pytest.mark.parametrize("change", [
    {"country": "Spain"},
    {"items": []},
    {"items": [{"product_id": "p", "category": "c", "quantity": -1, "unit_price": 1}]},
    {"items": [{"product_id": "p", "category": "c", "quantity": 1, "unit_price": -3}]},
    {"total_amount": "lots"},
    {"event_time": "2026-11-20T10:15:00"},  # naive time: no timezone
    {"schema_version": 2},
    {"unexpected": 1},
])
def test_invalid_transactions_are_refused(change: dict) -> None:
    with pytest.raises(ValidationError):
        parse_event("transactions", json.dumps({**TRANSACTION, **change}))


def test_missing_field_is_refused() -> None:
    payload = {k: v for k, v in TRANSACTION.items() if k != "user_id"}
    with pytest.raises(ValidationError, match="user_id"):
        parse_event("transactions", json.dumps(payload))


def test_restock_must_add_stock() -> None:
    base = {"event_id": TRANSACTION["event_id"], "event_time": TRANSACTION["event_time"],
            "product_id": "p-1", "kind": "restock"}
    assert parse_event("inventory_events", json.dumps({**base, "quantity_delta": 5}))
    with pytest.raises(ValidationError, match="positive"):
        parse_event("inventory_events", json.dumps({**base, "quantity_delta": 0}))


def test_json_schemas_are_exported_for_every_topic(tmp_path) -> None:
    written = export_json_schemas(tmp_path)

    names = {p.name for p in written}
    assert {f"{t}.schema.json" for t in INPUT_TOPICS} <= names
    schema = json.loads((tmp_path / "transactions.schema.json").read_text())
    assert "items" in schema["required"] and "total_amount" in schema["required"]
