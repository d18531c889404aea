"""Purchases: the lines of a clean purchase, those of each injected anomaly, and the ground
truth (the streaming rules of :data:`globalmart.vocabulary.ANOMALY_RULES` applied to a
transaction, so it matches them exactly). Clean purchases never trip a rule (quantities ≤ 3,
totals ≤ 5,000); each injected anomaly is built to trip its own rule only."""

from __future__ import annotations

from random import Random

from generator.catalog import Catalog
from generator.encoding import money
from globalmart.vocabulary import (
    HIGH_VALUE_THRESHOLD,
    MAX_LINE_QUANTITY,
    RAPID_FIRE_COUNT,
    RAPID_FIRE_WINDOW_SECONDS,
)

# The streaming rules' thresholds (globalmart.vocabulary) in the simulation's units.
HIGH_VALUE_CENTS = int(HIGH_VALUE_THRESHOLD * 100)
RAPID_FIRE_WINDOW_US = RAPID_FIRE_WINDOW_SECONDS * 1_000_000

MAX_CLEAN_QUANTITY = 3
MAX_LINES = 5

# Kinds of purchase
CLEAN, BURST, HIGH_VALUE, UNUSUAL_QUANTITY, TOTAL_MISMATCH = range(5)
INJECTED = (BURST, HIGH_VALUE, UNUSUAL_QUANTITY, TOTAL_MISMATCH)


def clean_lines(catalog: Catalog, items: list[tuple[int, int]]) -> list[list[int]]:
    """Lines with quantities ≤ 3 whose total stays ≤ 5,000.00."""
    price = catalog.price_cents
    lines: list[list[int]] = []
    total = 0
    for product, quantity in items[:MAX_LINES]:
        q = min(quantity, MAX_CLEAN_QUANTITY)
        while q and total + q * price[product] > HIGH_VALUE_CENTS:
            q -= 1
        if q:
            lines.append([product, q])
            total += q * price[product]
    return lines


def high_value_lines(catalog: Catalog, rng: Random) -> list[list[int]]:
    """Expensive products, quantities ≤ 10, total above 5,000.00."""
    r = rng.random
    price = catalog.price_cents
    pool = catalog.expensive
    lines: list[list[int]] = []
    total = 0
    while total <= HIGH_VALUE_CENTS and len(lines) < MAX_LINES:
        product = pool[int(r() * len(pool))]
        if any(line[0] == product for line in lines):
            continue
        quantity = 1 + int(r() * 3)
        lines.append([product, quantity])
        total += quantity * price[product]
    if total <= HIGH_VALUE_CENTS:  # a small catalogue: raise quantities up to 10
        for line in lines:
            while line[1] < MAX_LINE_QUANTITY and total <= HIGH_VALUE_CENTS:
                line[1] += 1
                total += price[line[0]]
    return lines


def unusual_quantity_lines(catalog: Catalog, rng: Random, lines: list[list[int]]
                           ) -> list[list[int]]:
    """A cheap product bought by the dozen; the total stays ≤ 5,000.00."""
    r = rng.random
    price = catalog.price_cents
    pool = catalog.cheap
    product = pool[int(r() * len(pool))]
    quantity = MAX_LINE_QUANTITY + 1 + int(r() * 30)
    while quantity > MAX_LINE_QUANTITY + 1 and quantity * price[product] > HIGH_VALUE_CENTS:
        quantity -= 1
    bulk = [product, quantity]
    kept = [line for line in lines if line[0] != product][: MAX_LINES - 1]
    total = quantity * price[product]
    result = []
    for line in kept:
        if total + line[1] * price[line[0]] <= HIGH_VALUE_CENTS:
            result.append(line)
            total += line[1] * price[line[0]]
    result.insert(int(r() * (len(result) + 1)), bulk)
    return result


def ground_truth(catalog: Catalog, lines: list[list[int]], total: int, lines_total: int,
                 count: int, user_id: str) -> list[tuple[str, str]]:
    """The rules a transaction trips, with their detail: ``total`` and ``lines_total`` in
    cents, ``count`` the user's purchases within the rapid-fire window, this one included."""
    found = []
    if total > HIGH_VALUE_CENTS:
        found.append(("high_value", f"total_amount {money(total)} > 5000.00"))
    for p, q in lines:
        if q > MAX_LINE_QUANTITY:
            found.append(("unusual_quantity", f"{catalog.id_str[p]} quantity {q} > 10"))
            break
    if count >= RAPID_FIRE_COUNT:
        found.append(("rapid_fire", f"transaction {count} by {user_id} within 60 s"))
    if total != lines_total:
        found.append(("total_mismatch",
                      f"total_amount {money(total)} != lines {money(lines_total)}"))
    return found
