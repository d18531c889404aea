"""Stock as the simulation sells and restocks: a line never sells more than is in stock, a
product running low schedules one restock (10 to 120 minutes later), and now and then a sale
schedules an adjustment (damaged, or found in a count)."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from generator.catalog import Catalog
from generator.purchases import MAX_CLEAN_QUANTITY

Schedule = Callable[[int, tuple[int, str, int]], None]  # (t_us, (product, kind, delta))


class Stock:
    """Stock levels by product index (the catalogue's initial stock until first touched)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.levels: dict[int, int] = {}
        self.restocking: set[int] = set()

    def take(self, t: int, lines: list[list[int]], rng: Random, schedule: Schedule
             ) -> list[list[int]]:
        """Sell what is in stock of ``lines`` at ``t``; schedule a restock when a product runs
        low. Returns the lines sold."""
        cat = self.catalog
        stock = self.levels
        sold = []
        for product, quantity in lines:
            have = stock.get(product)
            if have is None:
                have = cat.initial_stock[product]
            q = min(quantity, have)
            if q <= 0 or (q < quantity and quantity > MAX_CLEAN_QUANTITY):
                continue  # out of stock; an injected bulk line is all or nothing
            have -= q
            stock[product] = have
            sold.append([product, q])
            initial = cat.initial_stock[product]
            if have <= max(10, initial // 5) and product not in self.restocking:
                self.restocking.add(product)
                lead = 600_000_000 + int(rng.random() * 6_600_000_000)  # 10 to 120 min
                schedule(t + lead, (product, "restock", initial))
            elif rng.random() < 0.01:  # damaged or found in a count
                delta = -1 - int(rng.random() * 2)
                if rng.random() < 0.3:
                    delta = 1 + int(rng.random() * 5)
                schedule(t + 60_000_000 + int(rng.random() * 1_740_000_000),
                         (product, "adjustment", delta))
        return sold

    def apply(self, product: int, kind: str, delta: int) -> int:
        """Apply a scheduled restock or adjustment; return the change made (0: none; an
        adjustment never takes the stock below zero)."""
        have = self.levels.get(product, self.catalog.initial_stock[product])
        if kind == "restock":
            self.restocking.discard(product)
        elif have + delta < 0:
            delta = -have
        if delta == 0:
            return 0
        self.levels[product] = have + delta
        return delta
