"""Event contracts: what they accept and refuse, and their JSON Schema export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
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


# One case per class of input the contract must refuse, as a change to a valid transaction;
# the exported JSON Schema and the validator are both held to every case.
REFUSED: dict[str, dict] = {
    "string quantity": {"items": [{**TRANSACTION["items"][0], "quantity": "2"}]},
    "boolean quantity": {"items": [{**TRANSACTION["items"][0], "quantity": True}]},
    "fractional quantity": {"items": [{**TRANSACTION["items"][0], "quantity": 2.5}]},
    "integer event_time": {"event_time": 1_763_633_700},
    "NUL in a string": {"user_id": "u\u0000x"},
    "control character": {"city": "Le\u0007eds"},
    "C1 control character": {"city": "Le\u0085eds"},
    "string longer than 64": {"user_id": "u" * 65},
    "quantity beyond 1000": {"items": [{**TRANSACTION["items"][0], "quantity": 1001}]},
    "unit price beyond 100,000": {"items": [{**TRANSACTION["items"][0],
                                             "unit_price": 100000.01}]},
    "total beyond 500,000,000": {"total_amount": 500000000.01},
    "negative total": {"total_amount": -1},
    "six lines": {"items": [TRANSACTION["items"][0]] * 6},
    "unknown field": {"discount": 3},
}


def _schema_errors(topic: str, payload: dict) -> list[str]:
    import jsonschema

    from globalmart.contracts import json_schemas

    validator = jsonschema.Draft202012Validator(json_schemas()[topic])
    return [e.message for e in validator.iter_errors(payload)]


def _now_transaction(**change) -> dict:
    return {**TRANSACTION, "event_time": datetime.now(UTC).isoformat(), **change}


def test_the_schema_and_the_validator_accept_the_same_valid_events() -> None:
    payload = _now_transaction()
    assert _schema_errors("transactions", payload) == []
    parse_event("transactions", json.dumps(payload))


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_schema_and_the_validator_refuse_the_same_bad_input(case: str) -> None:
    payload = _now_transaction(**REFUSED[case])
    assert _schema_errors("transactions", payload), f"the JSON Schema accepts {case}"
    with pytest.raises(ValidationError):
        parse_event("transactions", json.dumps(payload))


@pytest.mark.parametrize("delta", [1_000_001, -1_000_001, 2**31])
def test_stock_deltas_stay_far_inside_32_bits(delta: int) -> None:
    payload = {"event_id": TRANSACTION["event_id"], "event_time": datetime.now(UTC).isoformat(),
               "schema_version": 1, "product_id": "p-1", "kind": "adjustment",
               "quantity_delta": delta}
    assert _schema_errors("inventory_events", payload)
    with pytest.raises(ValidationError):
        parse_event("inventory_events", json.dumps(payload))


@pytest.mark.parametrize("when", [timedelta(minutes=6), timedelta(days=3650 * 40),
                                  -timedelta(days=3651)])
def test_event_times_far_from_the_clock_are_refused(when: timedelta) -> None:
    """The window around now cannot be said in JSON Schema; its description says it."""
    moment = datetime.now(UTC) + when
    text = moment.isoformat() if 1 <= moment.year <= 9999 else "9999-12-31T23:59:59+00:00"
    with pytest.raises(ValidationError, match="future|past"):
        parse_event("transactions", json.dumps(_now_transaction(event_time=text)))
    parse_event("transactions", json.dumps(_now_transaction(
        event_time=(datetime.now(UTC) + timedelta(minutes=4)).isoformat())))
