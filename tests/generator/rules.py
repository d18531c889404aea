"""The streaming anomaly rules, written again independently and simply, to check the ground
truth the generator records."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

WINDOW = timedelta(seconds=60)


def transactions(values: list[bytes]) -> list[dict]:
    """Distinct valid transactions (by event_id) from raw message values."""
    seen: dict[str, dict] = {}
    for value in values:
        event = json.loads(value)
        seen.setdefault(event["event_id"], event)
    return list(seen.values())


def lines_total(tx: dict) -> Decimal:
    return sum((Decimal(str(line["unit_price"])) * line["quantity"] for line in tx["items"]),
               Decimal("0"))


def expected_anomalies(txs: list[dict]) -> set[tuple[str, str]]:
    """(transaction_id, anomaly_type) for every rule each transaction trips."""
    found = set()
    times: dict[str, list[datetime]] = defaultdict(list)
    for tx in txs:
        total = Decimal(str(tx["total_amount"]))
        if total > 5000:
            found.add((tx["transaction_id"], "high_value"))
        if any(line["quantity"] > 10 for line in tx["items"]):
            found.add((tx["transaction_id"], "unusual_quantity"))
        if total != lines_total(tx):
            found.add((tx["transaction_id"], "total_mismatch"))
        times[tx["user_id"]].append(datetime.fromisoformat(tx["event_time"]))
    for tx in txs:
        t = datetime.fromisoformat(tx["event_time"])
        in_window = sum(1 for other in times[tx["user_id"]] if t - WINDOW < other <= t)
        if in_window >= 5:
            found.add((tx["transaction_id"], "rapid_fire"))
    return found
