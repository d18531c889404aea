"""Transaction anomaly rules.

- ``high_value``: total_amount > 5,000 (exactly 5,000 is not).
- ``unusual_quantity``: a line with quantity > 10.
- ``total_mismatch``: total_amount ≠ Σ quantity × unit_price.
- ``rapid_fire``: at least the 5th transaction of the same user within (t − 60 s, t]. It needs
  the user's earlier transactions across micro-batches, so it is decided in PostgreSQL
  (:mod:`streaming.sinks.anomalies`) from :func:`user_transactions`.

Every anomaly has a score in [0, 1] that grows with how far past its threshold it is.
"""

from __future__ import annotations

import pandas as pd

from globalmart.vocabulary import (
    HIGH_VALUE_THRESHOLD,
    MAX_LINE_QUANTITY,
)
from streaming.transforms.sales import cents, money

ANOMALY_COLUMNS = ["transaction_id", "user_id", "amount", "anomaly_score", "anomaly_type",
                   "description", "event_time"]
USER_TX_COLUMNS = ["user_id", "transaction_id", "event_time", "amount"]


def _score(excess: float) -> float:
    """0.5 just past the threshold, rising to 1.0 at ``excess`` = 1."""
    return min(1.0, 0.5 + 0.5 * excess)


def rule_anomalies(order_rows: pd.DataFrame) -> pd.DataFrame:
    """The high_value, unusual_quantity and total_mismatch anomalies of the transactions in
    ``order_rows`` (:func:`streaming.transforms.sales.orders`), one row per (transaction, type)
    with the columns of ``transaction_anomalies`` except ``detected_at``."""
    threshold = cents(HIGH_VALUE_THRESHOLD)
    found = []
    for tx in order_rows.itertuples(index=False):
        amount = money(tx.total_cents)
        if tx.total_cents > threshold:
            found.append((tx.transaction_id, tx.user_id, amount,
                          _score((tx.total_cents - threshold) / 1_000_000), "high_value",
                          f"total {amount} exceeds {HIGH_VALUE_THRESHOLD}", tx.event_time))
        if tx.max_quantity > MAX_LINE_QUANTITY:
            found.append((tx.transaction_id, tx.user_id, amount,
                          _score((tx.max_quantity - MAX_LINE_QUANTITY) / 10), "unusual_quantity",
                          f"a line of {tx.max_quantity} units (more than {MAX_LINE_QUANTITY})",
                          tx.event_time))
        if tx.total_cents != tx.lines_cents:
            found.append((tx.transaction_id, tx.user_id, amount,
                          _score(abs(tx.total_cents - tx.lines_cents) / max(tx.lines_cents, 1)),
                          "total_mismatch",
                          f"total {amount} differs from the lines' sum {money(tx.lines_cents)}",
                          tx.event_time))
    return pd.DataFrame(found, columns=ANOMALY_COLUMNS)


def user_transactions(order_rows: pd.DataFrame) -> pd.DataFrame:
    """What the rapid-fire rule needs of each transaction: user_id, transaction_id,
    event_time, amount."""
    frame = order_rows[["user_id", "transaction_id", "event_time"]].copy()
    frame["amount"] = [money(c) for c in order_rows["total_cents"]]
    return frame
