"""Writing the warehouse (PostgreSQL). Every function runs inside the caller's transaction, so a
dimension refresh or a fact day is replaced all at once or not at all."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pyarrow as pa
from psycopg import sql

from globalmart.contracts import COUNTRIES
from globalmart.db import copy_arrow

W = "warehouse"

# valid_from of a customer's first version (valid_to of the current one: 9999-12-31, the
# column default).
BEGINNING_OF_TIME = datetime(1900, 1, 1, tzinfo=UTC)


class LoadError(RuntimeError):
    """A load would lose or invent rows (it is rolled back)."""


def replace_dim_date(conn: psycopg.Connection, days: pa.Table) -> int:
    """Replace the calendar."""
    conn.execute("DELETE FROM warehouse.dim_date")
    return copy_arrow(conn, sql.Identifier(W, "dim_date"), days)


_CUSTOMER_ATTRS = ("full_name", "email", "country", "city", "signup_date", "loyalty_tier")


def merge_dim_customer(conn: psycopg.Connection) -> dict[str, int]:
    """Type-2 merge of ``source.customers`` into ``dim_customer``.

    Inferred members are filled in place; a changed attribute closes the current version at the
    source's ``updated_at`` and opens a new one; new customers get a first version covering all
    time. Returns counts of filled, changed and new customers."""
    attrs = sql.SQL(", ").join(map(sql.Identifier, _CUSTOMER_ATTRS))
    d_attrs = sql.SQL(", ").join(sql.Identifier("d", a) for a in _CUSTOMER_ATTRS)
    s_attrs = sql.SQL(", ").join(sql.Identifier("s", a) for a in _CUSTOMER_ATTRS)
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(a), sql.Identifier("s", a))
        for a in _CUSTOMER_ATTRS
    )
    filled = conn.execute(sql.SQL(
        "UPDATE warehouse.dim_customer d SET {sets}, is_inferred = false "
        "FROM source.customers s WHERE d.user_id = s.user_id AND d.is_current AND d.is_inferred"
    ).format(sets=sets)).rowcount
    conn.execute(sql.SQL(
        "CREATE TEMP TABLE changed_customers ON COMMIT DROP AS "
        "SELECT d.customer_key, d.user_id, "
        "       greatest(s.updated_at, d.valid_from + interval '1 microsecond') AS change_at "
        "FROM warehouse.dim_customer d JOIN source.customers s ON s.user_id = d.user_id "
        "WHERE d.is_current AND NOT d.is_inferred AND ({d}) IS DISTINCT FROM ({s})"
    ).format(d=d_attrs, s=s_attrs))
    conn.execute(
        "UPDATE warehouse.dim_customer d SET valid_to = c.change_at, is_current = false "
        "FROM changed_customers c WHERE d.customer_key = c.customer_key"
    )
    changed = conn.execute(sql.SQL(
        "INSERT INTO warehouse.dim_customer (user_id, {attrs}, valid_from) "
        "SELECT s.user_id, {s}, c.change_at FROM changed_customers c "
        "JOIN source.customers s ON s.user_id = c.user_id"
    ).format(attrs=attrs, s=s_attrs)).rowcount
    new = conn.execute(sql.SQL(
        "INSERT INTO warehouse.dim_customer (user_id, {attrs}, valid_from) "
        "SELECT s.user_id, {s}, %s FROM source.customers s "
        "WHERE NOT EXISTS (SELECT 1 FROM warehouse.dim_customer d WHERE d.user_id = s.user_id)"
    ).format(attrs=attrs, s=s_attrs), (BEGINNING_OF_TIME,)).rowcount
    return {"filled_inferred": filled, "changed": changed, "new": new}


def upsert_dim_product(conn: psycopg.Connection) -> int:
    """Type-1 upsert of ``source.products`` (unchanged rows are not rewritten)."""
    return conn.execute(
        "INSERT INTO warehouse.dim_product AS d (product_id, product_name, category, brand, "
        "       list_price, is_inferred, source_updated_at) "
        "SELECT product_id, product_name, category, brand, list_price, false, updated_at "
        "FROM source.products "
        "ON CONFLICT (product_id) DO UPDATE SET product_name = EXCLUDED.product_name, "
        "    category = EXCLUDED.category, brand = EXCLUDED.brand, "
        "    list_price = EXCLUDED.list_price, is_inferred = false, "
        "    source_updated_at = EXCLUDED.source_updated_at "
        "WHERE (d.product_name, d.category, d.brand, d.list_price, d.is_inferred) "
        "      IS DISTINCT FROM (EXCLUDED.product_name, EXCLUDED.category, EXCLUDED.brand, "
        "                        EXCLUDED.list_price, false)"
    ).rowcount


def upsert_dim_location(conn: psycopg.Connection) -> int:
    """Every (country, city) of the contracts and of ``source.customers``, with its currency."""
    known = [(country, city, currency)
             for country, (currency, cities) in COUNTRIES.items() for city in cities]
    currencies = [(country, currency) for country, (currency, _) in COUNTRIES.items()]
    conn.execute("CREATE TEMP TABLE known_locations (country text, city text, currency text) "
                 "ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE known_currencies (country text, currency text) ON COMMIT DROP")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO known_locations VALUES (%s, %s, %s)", known)
        cur.executemany("INSERT INTO known_currencies VALUES (%s, %s)", currencies)
    return conn.execute(
        "INSERT INTO warehouse.dim_location AS d (country, city, currency) "
        "SELECT country, city, currency FROM known_locations "
        "UNION SELECT DISTINCT c.country, c.city, k.currency FROM source.customers c "
        "      LEFT JOIN known_currencies k ON k.country = c.country "
        "ON CONFLICT (country, city) DO UPDATE SET currency = EXCLUDED.currency, "
        "    is_inferred = false "
        "WHERE d.is_inferred OR d.currency IS DISTINCT FROM EXCLUDED.currency"
    ).rowcount


def _infer_members(conn: psycopg.Connection, stage: str, with_products: bool) -> None:
    """Dimension rows for keys seen in a staged fact day but unknown to the dimensions."""
    stage_id = sql.Identifier(stage)
    conn.execute(sql.SQL(
        "INSERT INTO warehouse.dim_customer (user_id, is_inferred, valid_from) "
        "SELECT DISTINCT user_id, true, %s::timestamptz FROM {} s "
        "WHERE NOT EXISTS (SELECT 1 FROM warehouse.dim_customer d WHERE d.user_id = s.user_id) "
        "ON CONFLICT DO NOTHING"
    ).format(stage_id), (BEGINNING_OF_TIME,))
    if not with_products:
        return
    conn.execute(sql.SQL(
        "INSERT INTO warehouse.dim_product (product_id, product_name, category, is_inferred) "
        "SELECT product_id, 'Unknown product ' || product_id, min(category), true FROM {} s "
        "WHERE NOT EXISTS (SELECT 1 FROM warehouse.dim_product d "
        "                  WHERE d.product_id = s.product_id) "
        "GROUP BY product_id ON CONFLICT DO NOTHING"
    ).format(stage_id))
    conn.execute(sql.SQL(
        "INSERT INTO warehouse.dim_location (country, city, currency, is_inferred) "
        "SELECT country, city, min(currency), true FROM {} s "
        "WHERE NOT EXISTS (SELECT 1 FROM warehouse.dim_location d "
        "                  WHERE d.country = s.country AND d.city = s.city) "
        "GROUP BY country, city ON CONFLICT DO NOTHING"
    ).format(stage_id))


def _stage(conn: psycopg.Connection, name: str, columns: str, rows: pa.Table, day: date) -> int:
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        sql.Identifier(name), sql.SQL(columns)))
    staged = copy_arrow(conn, sql.Identifier(name), rows)
    other_days = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE event_date <> %s").format(
        sql.Identifier(name)), (day,)).fetchone()
    if other_days and other_days[0]:
        raise LoadError(f"{other_days[0]} staged rows of {name} are not from {day}")
    return staged


_SALES_STAGE = (
    "event_date date, date_key integer, transaction_id text, line_number smallint, "
    "event_id text, event_time timestamptz, user_id text, product_id text, country text, "
    "city text, session_id text, category text, payment_method text, currency text, "
    "quantity integer, unit_price numeric(12, 2), line_amount numeric(14, 2)"
)


def replace_fact_sales_day(conn: psycopg.Connection, day: date, lines: pa.Table) -> dict[str, int]:
    """Replace ``fact_sales`` rows of ``day`` with ``lines`` (columns of
    ``transforms.SALES_COLUMNS``), resolving the customer version in effect at each event, the
    location and inferred members."""
    staged = _stage(conn, "stage_sales", _SALES_STAGE, lines, day)
    _infer_members(conn, "stage_sales", with_products=True)
    deleted = conn.execute("DELETE FROM warehouse.fact_sales WHERE event_date = %s",
                           (day,)).rowcount
    inserted = conn.execute(
        "INSERT INTO warehouse.fact_sales (event_date, date_key, transaction_id, line_number, "
        "    event_id, event_time, user_id, customer_key, product_id, location_key, session_id, "
        "    category, payment_method, currency, quantity, unit_price, line_amount) "
        "SELECT s.event_date, s.date_key, s.transaction_id, s.line_number, s.event_id, "
        "       s.event_time, s.user_id, c.customer_key, s.product_id, l.location_key, "
        "       s.session_id, s.category, s.payment_method, s.currency, s.quantity, "
        "       s.unit_price, s.line_amount "
        "FROM stage_sales s "
        "JOIN warehouse.dim_customer c ON c.user_id = s.user_id "
        "     AND s.event_time >= c.valid_from AND s.event_time < c.valid_to "
        "JOIN warehouse.dim_location l ON l.country = s.country AND l.city = s.city"
    ).rowcount
    if inserted != staged:
        raise LoadError(f"fact_sales {day}: staged {staged} lines but {inserted} resolved their "
                        "dimension keys")
    return {"rows": inserted, "replaced": deleted}


_SESSIONS_STAGE = (
    "event_date date, date_key integer, session_id text, user_id text, "
    "session_start timestamptz, session_end timestamptz, duration_seconds double precision, "
    "page_views integer, view_seconds bigint, cart_adds integer, cart_removes integer, "
    "cart_updates integer, purchases integer, revenue numeric(14, 2), converted boolean"
)


def replace_fact_sessions_day(conn: psycopg.Connection, day: date, sessions: pa.Table
                              ) -> dict[str, int]:
    """Replace ``fact_sessions`` rows of ``day`` (columns of ``transforms.SESSION_COLUMNS``)."""
    staged = _stage(conn, "stage_sessions", _SESSIONS_STAGE, sessions, day)
    _infer_members(conn, "stage_sessions", with_products=False)
    deleted = conn.execute("DELETE FROM warehouse.fact_sessions WHERE event_date = %s",
                           (day,)).rowcount
    inserted = conn.execute(
        "INSERT INTO warehouse.fact_sessions (event_date, date_key, session_id, user_id, "
        "    customer_key, session_start, session_end, duration_seconds, page_views, "
        "    view_seconds, cart_adds, cart_removes, cart_updates, purchases, revenue, converted) "
        "SELECT s.event_date, s.date_key, s.session_id, s.user_id, c.customer_key, "
        "       s.session_start, s.session_end, s.duration_seconds, s.page_views, "
        "       s.view_seconds, s.cart_adds, s.cart_removes, s.cart_updates, s.purchases, "
        "       s.revenue, s.converted "
        "FROM stage_sessions s JOIN warehouse.dim_customer c ON c.user_id = s.user_id "
        "     AND s.session_start >= c.valid_from AND s.session_start < c.valid_to"
    ).rowcount
    if inserted != staged:
        raise LoadError(f"fact_sessions {day}: staged {staged} sessions but {inserted} resolved "
                        "their customer")
    return {"rows": inserted, "replaced": deleted}
