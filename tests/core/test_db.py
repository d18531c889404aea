"""Schema migrations against the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from globalmart import db


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrations_apply_once_then_are_a_no_op(make_database) -> None:
    url = make_database(migrate=False)

    first = db.upgrade(url)
    tables_after_first = _tables(url)
    second = db.upgrade(url)

    assert [m.version for m in first] == [m.version for m in db.migrations()]
    assert second == []
    assert _tables(url) == tables_after_first
    assert {"source.customers", "source.products", "source.injected_anomalies",
            "public.sales_metrics", "marts.customer_rfm_analysis"} <= tables_after_first


def test_an_edited_applied_migration_is_refused(make_database) -> None:
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE public.schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(db.MigrationError, match="changed after it was applied"):
        db.upgrade(url)


def test_ensure_database_creates_only_once(make_database) -> None:
    url = make_database(migrate=False)
    fresh = url + "_x"
    try:
        assert db.ensure_database(fresh) is True
        assert db.ensure_database(fresh) is False
    finally:
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_redact_hides_the_password() -> None:
    assert db.redact("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert db.redact("postgresql://u@h/d") == "postgresql://u@h/d"


def test_connect_failure_names_the_server() -> None:
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1/"):
        db.connect("postgresql://postgres@127.0.0.1:1/nothing")
