"""The source tables the generator writes (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from generator.catalog import CITIES, Catalog, customer, user_home
from generator.clock import to_us
from generator.simulate import Records
from generator.sources import SourceTablesMissing, SourceWriter, check_tables, write_records


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_records_are_upserted_idempotently(make_database, catalog: Catalog) -> None:
    url = make_database()
    moved_at = datetime(2026, 5, 9, 12, 0, 0, 123456, tzinfo=UTC)
    country, city = user_home(3)
    new_city = (city + 1) % len(CITIES[country])
    records = Records(
        new_customers=[1, 2, 3],
        customer_moves=[(3, new_city, to_us(moved_at))],
        new_products=[10, 20],
        anomalies=[("tx-1", "high_value", "U00000001", to_us(moved_at), "total 6000 > 5000")],
    )
    with psycopg.connect(url, autocommit=True) as conn:
        write_records(conn, catalog, records)
        write_records(conn, catalog, records)  # the same batch again changes nothing
        older = Records(customer_moves=[(3, city, to_us(moved_at) - 1)])
        write_records(conn, catalog, older)  # an older move never wins
    customers = _rows(url, "SELECT user_id, full_name, email, country, city, signup_date, "
                           "loyalty_tier, updated_at FROM source.customers ORDER BY user_id")
    assert [c[0] for c in customers] == ["U00000001", "U00000002", "U00000003"]
    first = customer(1)
    assert customers[0][1:7] == (first.full_name, first.email, first.country, first.city,
                                 first.signup_date, first.loyalty_tier)
    assert customers[0][7] == datetime(first.signup_date.year, first.signup_date.month,
                                       first.signup_date.day, tzinfo=UTC)
    assert customers[2][4] == CITIES[country][new_city]
    assert customers[2][7] == moved_at
    products = _rows(url, "SELECT product_id, category, list_price, initial_stock "
                          "FROM source.products ORDER BY product_id")
    assert [(p[0], p[1], int(p[2] * 100), p[3]) for p in products] == [
        (catalog.id_str[i], catalog.product(i).category, catalog.price_cents[i],
         catalog.initial_stock[i]) for i in (10, 20)]
    anomalies = _rows(url, "SELECT transaction_id, anomaly_type, user_id, event_time, detail "
                           "FROM source.injected_anomalies")
    assert anomalies == [("tx-1", "high_value", "U00000001", moved_at, "total 6000 > 5000")]


def test_the_writer_flushes_everything_on_close(make_database, catalog: Catalog) -> None:
    url = make_database()
    writer = SourceWriter(url, catalog)
    writer.start()
    for start in range(0, 30_000, 1_000):
        writer.submit(Records(new_customers=list(range(start, start + 1_000))))
    writer.close()
    assert writer.error is None
    assert _rows(url, "SELECT count(*) FROM source.customers") == [(30_000,)]


def test_missing_tables_are_a_clear_error(make_database) -> None:
    url = make_database(migrate=False)
    with pytest.raises(SourceTablesMissing, match="globalmart db upgrade"):
        check_tables(url)
