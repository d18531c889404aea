"""A day of events for the Dagster tests and benchmarks, written the way the streaming app
writes them: raw-layer Parquet under ``<lake>/raw/<topic>/event_date=YYYY-MM-DD/`` with the
schema ``globalmart.raw_layer.raw_schema(topic)``, plus the source tables and the stream's
``sales_metrics``.

Two sources of events: :func:`generated_day` runs the seeded generator's pure simulation
(``generator.simulate``) over one day and parses its messages with the contracts;
:func:`build_day` builds a simpler day by hand (fast at benchmark scale). The expected figures
the tests assert are computed from these events in the tests themselves.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from random import Random
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from globalmart.contracts import COUNTRIES, INPUT_TOPICS, parse_event
from globalmart.raw_layer import raw_arrow_schema

CATEGORIES = ("Laptops", "Fiction", "Running", "Bedding")
PRICE_RANGE = {"Laptops": (300, 2000), "Fiction": (10, 50), "Running": (20, 300),
               "Bedding": (15, 500)}


@dataclass
class Day:
    """A simulated day: events per topic (contract fields + Kafka position) and source rows."""

    day: date
    events: dict[str, list[dict]] = field(default_factory=dict)
    customers: list[dict] = field(default_factory=list)
    products: list[dict] = field(default_factory=list)

    def unique(self, topic: str) -> list[dict]:
        """The topic's events with re-deliveries (same event_id) counted once."""
        seen: dict[str, dict] = {}
        for event in self.events[topic]:
            seen.setdefault(event["event_id"], event)
        return list(seen.values())


def generated_day(day: date, seed: int = 42, users: int = 3000, products: int = 2000,
                  history_rate: float = 0.15, resend_rate: float = 0.01) -> tuple[Day, Any]:
    """One UTC day from the generator's simulation (same seed, same events). Returns the day
    (events parsed and validated by the contracts, re-sent duplicates included, Kafka
    partitions by key hash and offsets per partition) and a function that writes the
    generator's source-table records to a database URL."""
    from generator.catalog import Catalog
    from generator.clock import Params, to_us
    from generator.simulate import Simulator
    from generator.sources import write_records

    start = to_us(datetime.combine(day, time(), tzinfo=UTC))
    end = start + 86_400_000_000
    catalog = Catalog(products)
    simulator = Simulator(catalog, users, Params(start_us=start, history_end_us=end, rate=1.0,
                                                 history_rate=history_rate,
                                                 resend_rate=resend_rate), seed)
    messages = []
    while simulator.clock < end:
        _, out = simulator.step()
        messages += out
    records = simulator.drain()
    result = Day(day, events={topic: [] for topic in INPUT_TOPICS})
    offsets: dict[tuple[str, int], int] = {}
    for topic, key, value in messages:
        event = parse_event(topic, value).model_dump()
        event["event_id"] = str(event["event_id"])
        partition = zlib.crc32(key) % 3
        event["kafka_partition"] = partition
        event["kafka_offset"] = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = event["kafka_offset"] + 1
        event["event_date"] = event["event_time"].astimezone(UTC).date()
        if event["event_date"] == day:
            result.events[topic].append(event)

    def write(url: str) -> None:
        with psycopg.connect(url) as conn:
            write_records(conn, catalog, records)

    return result, write


def _json_value(value: Any) -> Any:
    """Encode a field as the generator does on the wire: times in ISO 8601, money as numbers."""
    return value.isoformat() if isinstance(value, datetime) else float(value)


def _uuid(rng: Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_day(day: date, seed: int = 7, transactions: int = 400, users: int = 120,
              products: int = 40, known_users: float = 0.9, validate: bool = True) -> Day:
    """One day of shopping: sessions with views, cart events and (some) purchases, a few
    restocks, a re-delivered transaction; a share of the users and one product are unknown to
    the source tables (they become inferred members). ``validate`` checks every event against
    its contract (slow at benchmark scale)."""
    rng = Random(seed)
    result = Day(day)
    start = datetime.combine(day, time(), tzinfo=UTC)
    countries = list(COUNTRIES)
    user_ids = [f"user_{i:07d}" for i in range(users)]  # the same people every day
    homes = {}
    for i, uid in enumerate(user_ids):
        country = countries[i % len(countries)]
        currency, cities = COUNTRIES[country]
        homes[uid] = (country, cities[i % len(cities)], currency)
        if i < int(users * known_users):
            result.customers.append({
                "user_id": uid, "full_name": f"Customer {i}", "email": f"c{i}@example.com",
                "country": country, "city": homes[uid][1],
                "signup_date": day - timedelta(days=30 + i), "loyalty_tier": "silver",
                "updated_at": start - timedelta(days=1),
            })
    catalog = []
    for i in range(products):  # the same catalogue every day
        category = CATEGORIES[i % len(CATEGORIES)]
        low, high = PRICE_RANGE[category]
        price = Decimal(low * 100 + (i * 7919) % ((high - low) * 100)) / 100
        catalog.append((f"prod_{i:06d}", category, price))
        if i < products - 1:  # the last product is unknown to the source
            result.products.append({
                "product_id": catalog[-1][0], "product_name": f"Product {i}",
                "category": category, "brand": "Acme", "list_price": price,
                "initial_stock": 500, "updated_at": start - timedelta(days=1),
            })
    events: dict[str, list[dict]] = {topic: [] for topic in INPUT_TOPICS}

    def moment() -> datetime:
        return start + timedelta(microseconds=rng.randrange(86_400_000_000 - 3_600_000_000))

    for n in range(transactions):
        uid = user_ids[min(int(rng.random() ** 2 * users), users - 1)]
        country, city, currency = homes[uid]
        session = f"sess_{seed}_{n:06d}"
        t = moment()
        lines = []
        for _ in range(rng.randint(1, 5)):
            pid, category, price = catalog[rng.randrange(products)]
            quantity = rng.randint(1, 3)
            events["product_views"].append({
                "event_id": _uuid(rng), "event_time": t, "schema_version": 1, "user_id": uid,
                "session_id": session, "product_id": pid, "category": category,
                "duration_seconds": rng.randint(5, 300), "device": "mobile", "country": country,
            })
            t += timedelta(seconds=rng.randint(5, 120))
            events["cart_events"].append({
                "event_id": _uuid(rng), "event_time": t, "schema_version": 1, "user_id": uid,
                "session_id": session, "product_id": pid, "action": "add", "quantity": quantity,
            })
            lines.append({"product_id": pid, "category": category, "quantity": quantity,
                          "unit_price": price})
        t += timedelta(seconds=rng.randint(5, 120))
        total = sum((line["unit_price"] * line["quantity"] for line in lines), Decimal("0.00"))
        events["transactions"].append({
            "event_id": _uuid(rng), "event_time": t, "schema_version": 1,
            "transaction_id": f"tx_{seed}_{n:06d}", "user_id": uid, "session_id": session,
            "country": country, "city": city, "payment_method": "paypal", "currency": currency,
            "items": lines, "total_amount": total,
        })
    for n in range(transactions // 4):  # browsing sessions without a purchase
        uid = user_ids[rng.randrange(users)]
        pid, category, _ = catalog[rng.randrange(products)]
        t = moment()
        session = f"browse_{seed}_{n:06d}"
        events["product_views"].append({
            "event_id": _uuid(rng), "event_time": t, "schema_version": 1, "user_id": uid,
            "session_id": session, "product_id": pid, "category": category,
            "duration_seconds": rng.randint(5, 300), "device": "desktop",
            "country": homes[uid][0],
        })
        for action in ("add", "remove"):
            t += timedelta(seconds=30)
            events["cart_events"].append({
                "event_id": _uuid(rng), "event_time": t, "schema_version": 1, "user_id": uid,
                "session_id": session, "product_id": pid, "action": action, "quantity": 1,
            })
    for _ in range(max(1, transactions // 50)):
        events["inventory_events"].append({
            "event_id": _uuid(rng), "event_time": moment(), "schema_version": 1,
            "product_id": catalog[rng.randrange(products)][0], "kind": "restock",
            "quantity_delta": rng.randint(10, 100),
        })
    if events["transactions"]:  # an at-least-once re-delivery: same event, later offset
        events["transactions"].append(dict(events["transactions"][0]))
    for topic, rows in events.items():
        for offset, row in enumerate(rows):
            if validate:
                parse_event(topic, json.dumps(row, default=_json_value))
            row["kafka_partition"] = offset % 3
            row["kafka_offset"] = offset
            row["event_date"] = day
    result.events = events
    return result


def write_raw_layer(lake: Path | str, data: Day) -> None:
    """Write the day's events as the streaming app does: one directory per topic and day,
    Parquet files with the raw schema minus the partition column."""
    for topic, rows in data.events.items():
        schema = raw_arrow_schema(topic)
        table = pa.Table.from_pylist([{name: r[name] for name in schema.names} for r in rows],
                                     schema=schema)
        directory = Path(lake) / "raw" / topic / f"event_date={data.day.isoformat()}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, directory / "part-00000.parquet")


CUSTOMER_COLUMNS = ("user_id", "full_name", "email", "country", "city", "signup_date",
                    "loyalty_tier", "updated_at")
PRODUCT_COLUMNS = ("product_id", "product_name", "category", "brand", "list_price",
                   "initial_stock", "updated_at")


def write_sources(url: str, data: Day) -> None:
    """Add the day's customers and products to ``source.*`` (those not there yet)."""
    with psycopg.connect(url) as conn:
        for table, columns, rows in (("customers", CUSTOMER_COLUMNS, data.customers),
                                     ("products", PRODUCT_COLUMNS, data.products)):
            conn.execute(f"CREATE TEMP TABLE new_{table} (LIKE source.{table})")
            with conn.cursor().copy(
                    f"COPY new_{table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
            conn.execute(f"INSERT INTO source.{table} SELECT * FROM new_{table} "
                         "ON CONFLICT DO NOTHING")
            conn.execute(f"DROP TABLE new_{table}")


def write_stream_ledger(url: str, data: Day) -> None:
    """What the streaming app's day ledger says of these events: every transaction accepted
    (none late), each counted once, revenue as Σ quantity × unit price of its lines."""
    per_day: dict[object, list] = {}
    for tx in data.unique("transactions"):
        revenue = sum((line["quantity"] * line["unit_price"] for line in tx["items"]), Decimal(0))
        day = per_day.setdefault(tx["event_time"].date(), [0, Decimal(0)])
        day[0] += 1
        day[1] += revenue
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.stream_day_ledger (event_date, accepted_transactions, "
            "accepted_revenue) VALUES (%s, %s, %s)",
            [(day, n, revenue) for day, (n, revenue) in per_day.items()])


FACT_SALES_COLUMNS = ("transaction_id, line_number, product_id, quantity, unit_price, "
                      "line_amount, user_id, category")


def expected_fact_sales(data: Day) -> list[tuple]:
    """The ``warehouse.fact_sales`` rows (:data:`FACT_SALES_COLUMNS`) of the day's events, in
    order: every line of every transaction once (re-deliveries counted once)."""
    return sorted(
        (tx["transaction_id"], n, line["product_id"], line["quantity"], line["unit_price"],
         line["quantity"] * line["unit_price"], tx["user_id"], line["category"])
        for tx in data.unique("transactions")
        for n, line in enumerate(tx["items"], start=1)
    )
