"""Malformed input for the stream to reject: a broken variant of a valid message."""

from __future__ import annotations

import json
from collections.abc import Callable
from random import Random

from generator.encoding import (
    CART_EVENTS,
    INVENTORY_EVENTS,
    PRODUCT_VIEWS,
    TRANSACTIONS,
    Message,
    uuid4_str,
)


def malformed(rng: Random, topic: str, key: bytes, value: bytes) -> Message:
    """A broken variant of a valid message: bad JSON, a missing field, a wrong type or a
    negative quantity/price. It gets a fresh event_id so it is never a resend."""
    r = rng.random
    choice = int(r() * 4)
    if choice == 0:
        return topic, key, value[: max(1, int(len(value) * (0.2 + 0.6 * r())))]
    event = json.loads(value)
    event["event_id"] = uuid4_str(rng.getrandbits(128))
    if choice == 1:
        required = [k for k in event if k not in ("schema_version",)]
        del event[required[int(r() * len(required))]]
    elif choice == 2:
        event[_WRONG_TYPE[topic]] = "n/a"
    else:
        _NEGATIVE[topic](event)
    return topic, key, json.dumps(event, separators=(",", ":")).encode()


_WRONG_TYPE = {
    TRANSACTIONS: "total_amount",
    PRODUCT_VIEWS: "duration_seconds",
    CART_EVENTS: "quantity",
    INVENTORY_EVENTS: "event_time",
}


def _negative_transaction(event: dict) -> None:
    line = event["items"][0]
    if line["quantity"] % 2:
        line["quantity"] = -line["quantity"]
    else:
        line["unit_price"] = -line["unit_price"]


def _negative_view(event: dict) -> None:
    event["duration_seconds"] = -event["duration_seconds"]


def _negative_cart(event: dict) -> None:
    event["quantity"] = -event["quantity"]


def _negative_stock(event: dict) -> None:
    event["kind"] = "restock"
    event["quantity_delta"] = -abs(event["quantity_delta"])


_NEGATIVE: dict[str, Callable[[dict], None]] = {
    TRANSACTIONS: _negative_transaction,
    PRODUCT_VIEWS: _negative_view,
    CART_EVENTS: _negative_cart,
    INVENTORY_EVENTS: _negative_stock,
}
