"""A realistic, deterministic dataset for the serving layer (API, dashboard, Grafana).

Source events (transactions with their lines, sessions, carts, stock, alerts, streaming
batches) are simulated first; the real-time tables are then filled the way the streaming job
fills them (one-minute tumbling windows, order-level windows, stock status, sessions), and the
marts with two snapshots (only the latest may be served). Tests derive their expectations from
the source events in ``Dataset``, not from the loaded tables.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

from globalmart.contracts import COUNTRIES
from globalmart.vocabulary import SEGMENTS

CATEGORIES = {  # category: price range
    "Electronics": (50, 2000), "Clothing": (10, 200), "Home & Garden": (15, 500),
    "Books": (10, 50), "Sports": (20, 300), "Toys": (10, 200),
}


@dataclass(frozen=True)
class Line:
    product_id: str
    category: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Txn:
    transaction_id: str
    user_id: str
    session_id: str
    country: str
    event_time: datetime
    lines: tuple[Line, ...]

    @property
    def revenue(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)


@dataclass(frozen=True)
class Session:
    session_id: str
    user_id: str
    start: datetime
    end: datetime
    page_views: int
    cart_adds: int
    purchases: int
    revenue: Decimal


@dataclass
class Dataset:
    now: datetime
    products: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # name, cat, stock
    transactions: list[Txn] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    abandoned: list[tuple[str, datetime, str, datetime, int, datetime]] = field(
        default_factory=list)
    anomalies: list[tuple[str, str, Decimal, float, str, datetime, str]] = field(
        default_factory=list)
    alerts: list[tuple[str, str, str, str, str, datetime]] = field(default_factory=list)
    stock: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # sold, restock, adj
    pipeline: list[tuple] = field(default_factory=list)
    dead_letters: list[tuple] = field(default_factory=list)
    rfm: list[tuple] = field(default_factory=list)
    product_perf: list[tuple] = field(default_factory=list)
    trends: list[tuple] = field(default_factory=list)

    @property
    def latest_analysis_date(self) -> date:
        return max(row[0] for row in self.rfm)


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def stock_status(stock: int) -> str:
    if stock <= 0:
        return "out"
    if stock <= 5:
        return "critical"
    return "low" if stock <= 10 else "ok"


# Minutes-ago bands kept empty, so that boundaries the API computes a little later than the
# test (active users: 30 min, the live chart: 60 min) cannot move a row across them.
_QUIET_BANDS = ((25, 35), (56, 64))


def _away_from_bands(now: datetime, ts: datetime) -> datetime:
    for low, high in _QUIET_BANDS:
        if now - timedelta(minutes=high) < ts < now - timedelta(minutes=low):
            return now - timedelta(minutes=high + 1)
    return ts


def build(now: datetime | None = None, seed: int = 7, n_transactions: int = 600) -> Dataset:
    """Simulate the events of the last weeks, dense in the last three hours."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    data = Dataset(now=now)
    for i in range(60):
        category = list(CATEGORIES)[i % len(CATEGORIES)]
        data.products[f"P{i:05d}"] = (f"{category} item {i}", category, rng.randint(8, 60))
    product_ids = list(data.products)
    users = [f"U{i:06d}" for i in range(150)]

    def transaction_at(ts: datetime, user: str, session: str) -> Txn:
        lines = []
        for _ in range(rng.randint(1, 3)):
            pid = rng.choice(product_ids)
            category = data.products[pid][1]
            low, high = CATEGORIES[category]
            price = Decimal(rng.randint(low * 100, high * 100)) / 100
            lines.append(Line(pid, category, rng.randint(1, 3), price))
        return Txn(str(uuid.UUID(int=rng.getrandbits(128))), user, session,
                   rng.choice(list(COUNTRIES)), ts, tuple(lines))

    # Dense recent traffic (last 3 hours) plus a tail over the last 40 days.
    for i in range(n_transactions):
        if i < n_transactions * 0.8:
            ts = _away_from_bands(now, now - timedelta(seconds=rng.randint(60, 3 * 3600)))
        else:
            ts = now - timedelta(hours=rng.choice([30, 80, 200, 500, 900]),
                                 seconds=rng.randint(0, 3000))
        user = rng.choice(users)
        session = f"S{i:06d}"
        txn = transaction_at(ts, user, session)
        data.transactions.append(txn)
        start = ts - timedelta(minutes=rng.randint(1, 20))
        data.sessions.append(Session(session, user, start, ts, rng.randint(1, 12),
                                     rng.randint(1, 4), 1, txn.revenue))
    # Browsing-only sessions, some with abandoned carts.
    for i in range(120):
        end = _away_from_bands(now, now - timedelta(minutes=rng.randint(2, 36 * 60)))
        start = end - timedelta(minutes=rng.randint(1, 25))
        adds = rng.choice([0, 0, 1, 2])
        session = Session(f"B{i:06d}", rng.choice(users), start, end, rng.randint(1, 8), adds, 0,
                          Decimal("0"))
        data.sessions.append(session)
        if adds:
            data.abandoned.append((session.session_id, start, session.user_id, end, adds,
                                   end + timedelta(minutes=15)))
    data.abandoned = [a for a in data.abandoned if a[5] <= now]

    # Stock: sold units from the transactions; a few products restocked or adjusted.
    sold: dict[str, int] = defaultdict(int)
    for txn in data.transactions:
        for line in txn.lines:
            sold[line.product_id] += line.quantity
    for pid in product_ids:
        restock = rng.choice([0, 0, 0, 20])
        adjust = rng.choice([0, 0, -1, 2])
        data.stock[pid] = (sold[pid], restock, adjust)

    # Anomalies at different ages (hours ago).
    kinds = ["high_value", "unusual_quantity", "rapid_fire", "total_mismatch"]
    for i, hours in enumerate([0.2, 0.5, 1, 2, 5, 10, 20, 30, 50, 100, 150, 200]):
        txn = data.transactions[i]
        data.anomalies.append((txn.transaction_id, txn.user_id, txn.revenue,
                               round(rng.uniform(0.3, 1.0), 3), kinds[i % 4],
                               now - timedelta(hours=hours), f"{kinds[i % 4]} on {txn.user_id}"))
    # Alerts.
    severities = ["info", "warning", "critical"]
    for i, hours in enumerate([0.1, 0.3, 1, 3, 6, 12, 23, 26, 48, 100]):
        data.alerts.append((str(uuid.UUID(int=rng.getrandbits(128))),
                            rng.choice(["low_stock", "high_value", "rapid_fire"]),
                            severities[i % 3], f"P{i:05d}", f"alert number {i}",
                            now - timedelta(hours=hours)))

    # Streaming batches over the last 20 minutes: two queries, the raw sink reads every topic.
    for batch_id in range(1, 41):
        processed = now - timedelta(seconds=30 * (41 - batch_id))
        for query, topics in (("sales", ["transactions"]),
                              ("raw_sink", ["transactions", "product_views", "cart_events",
                                            "inventory_events"])):
            for topic in topics:
                rows = rng.randint(100, 900)
                data.pipeline.append((query, batch_id, topic, processed, rows, rows / 30.0,
                                      rows / 2.0, rng.randint(200, 3000), rng.randint(0, 500),
                                      rows, processed - timedelta(seconds=2)))
    # A query whose batch read nothing reports the topic "*" (no offsets): not a topic.
    data.pipeline.append(("idle", 1, "*", now - timedelta(minutes=2), 0, 0.0, 0.0, 15, 0, 0,
                          None))
    for i, minutes in enumerate([1, 3, 50, 200]):
        data.dead_letters.append(("transactions", 0, i, "invalid JSON", "{bad",
                                  now - timedelta(minutes=minutes)))

    # Marts: two snapshots (the older one must never be served).
    today = now.date()
    for snapshot, shift in ((today - timedelta(days=2), 1.0), (today - timedelta(days=1), 1.0)):
        stale = snapshot != today - timedelta(days=1)
        for i, user in enumerate(users):
            monetary = Decimal(rng.randint(1000, 900000)) / 100
            segment = SEGMENTS[(i + (3 if stale else 0)) % len(SEGMENTS)]
            data.rfm.append((snapshot, user, rng.randint(0, 300), rng.randint(1, 40),
                             monetary * Decimal(shift), rng.randint(1, 5), rng.randint(1, 5),
                             rng.randint(1, 5), segment))
        ranks: dict[str, int] = defaultdict(int)
        perf = []
        for pid in product_ids:
            name, category, _ = data.products[pid]
            units = rng.randint(0, 400)
            price = Decimal(rng.randint(1000, 90000)) / 100
            perf.append((snapshot, pid, name, category, units, price * units, price,
                         round(rng.random(), 4)))
        perf.sort(key=lambda row: (row[3], -row[5]))
        for row in perf:
            ranks[row[3]] += 1
            data.product_perf.append((*row, ranks[row[3]]))
    for trend_type, periods, step_days in (("daily", 40, 1), ("weekly", 12, 7),
                                           ("monthly", 6, 30)):
        previous = None
        for k in range(periods):
            day = today - timedelta(days=step_days * (periods - k))
            revenue = Decimal(rng.randint(10000, 90000))
            orders = rng.randint(50, 400)
            growth = None if previous is None else float((revenue - previous) / previous)
            data.trends.append((trend_type, day, revenue, orders,
                                (revenue / orders).quantize(Decimal("0.01")),
                                revenue, growth))
            previous = revenue
    return data


def load(url: str, data: Dataset) -> None:
    """Fill the real-time tables and marts from the simulated events (replacing their rows)."""
    sales: dict[tuple, list] = defaultdict(lambda: [Decimal("0"), set(), 0])
    orders: dict[tuple, list] = defaultdict(lambda: [0, Decimal("0"), 0, []])
    for txn in data.transactions:
        start = minute(txn.event_time)
        for line in txn.lines:
            cell = sales[(start, line.category, txn.country)]
            cell[0] += line.amount
            cell[1].add(txn.transaction_id)
            cell[2] += line.quantity
        cell = orders[(start, txn.country)]
        cell[0] += 1
        cell[1] += txn.revenue
        cell[2] += txn.units
        cell[3].append(txn.revenue)
    written = data.now - timedelta(seconds=5)
    with psycopg.connect(url, autocommit=False) as conn:
        for table in ("public.sales_metrics", "public.sales_metrics_hourly", "public.order_metrics",
                      "public.transaction_anomalies", "public.inventory_status",
                      "public.session_metrics", "public.cart_abandonment", "public.alerts",
                      "public.pipeline_metrics", "public.dead_letter",
                      "marts.customer_rfm_analysis", "marts.product_performance",
                      "marts.sales_trends"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO public.sales_metrics VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [(start, start + timedelta(minutes=1), cat, country, total, len(txns),
                  (total / len(txns)).quantize(Decimal("0.01")), units,
                  min(written, start + timedelta(minutes=1, seconds=3)))
                 for (start, cat, country), (total, txns, units) in sales.items()])
            cur.executemany(
                "INSERT INTO public.order_metrics VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [(start, start + timedelta(minutes=1), country, n, revenue, revenue, units,
                  min(written, start + timedelta(minutes=1, seconds=3)), min(each), max(each))
                 for (start, country), (n, revenue, units, each) in orders.items()])
            cur.executemany(
                "INSERT INTO public.transaction_anomalies VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                [(*a, a[5] - timedelta(seconds=2)) for a in data.anomalies])
            cur.executemany(
                "INSERT INTO public.inventory_status VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [(pid, name, cat, initial, *data.stock[pid],
                  initial - data.stock[pid][0] + data.stock[pid][1] + data.stock[pid][2],
                  stock_status(initial - data.stock[pid][0] + data.stock[pid][1]
                               + data.stock[pid][2]), written)
                 for pid, (name, cat, initial) in data.products.items()])
            cur.executemany(
                "INSERT INTO public.session_metrics (session_id, user_id, session_start, "
                "session_end, duration_seconds, page_views, cart_adds, cart_removes, purchases, "
                "revenue, converted, last_cart_add_at, purchased_after_last_add, updated_at) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,0,%s,%s,%s,%s,%s,%s)",
                [(s.session_id, s.user_id, s.start, s.end, (s.end - s.start).total_seconds(),
                  s.page_views, s.cart_adds, s.purchases, s.revenue, s.purchases > 0,
                  s.end if s.cart_adds else None, s.purchases > 0, written)
                 for s in data.sessions])
            cur.executemany("INSERT INTO public.cart_abandonment VALUES (%s,%s,%s,%s,%s,%s)",
                            data.abandoned)
            cur.executemany("INSERT INTO public.alerts VALUES (%s,%s,%s,%s,%s,%s)", data.alerts)
            cur.executemany(
                "INSERT INTO public.pipeline_metrics VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                data.pipeline)
            cur.executemany("INSERT INTO public.dead_letter VALUES (%s,%s,%s,%s,%s,%s)",
                            data.dead_letters)
            cur.executemany(
                "INSERT INTO marts.customer_rfm_analysis (analysis_date, user_id, recency, "
                "frequency, monetary, r_score, f_score, m_score, rfm_segment) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", data.rfm)
            cur.executemany(
                "INSERT INTO marts.product_performance (analysis_date, product_id, product_name, "
                "category, units_sold, total_revenue, avg_price, performance_score, "
                "rank_in_category) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", data.product_perf)
            cur.executemany(
                "INSERT INTO marts.sales_trends (trend_type, date, revenue, orders, "
                "average_order_value, moving_average, growth) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                data.trends)
        conn.commit()
