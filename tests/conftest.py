"""Shared fixtures: the real services of this machine.

- PostgreSQL: ``GLOBALMART_TEST_DATABASE_URL`` (default the server on 127.0.0.1:5432, trust
  auth). Each test session gets its own freshly migrated database, dropped at the end, so
  parallel sessions never share state.
- Kafka: one Apache Kafka broker (KRaft, the jars ``make install`` fetched) on a free port for
  the whole session; ``broker`` hands it to a test with no topics and deletes every topic and
  consumer group the test made afterwards, so tests stay independent.
- Redis: ``GLOBALMART_TEST_REDIS_URL`` (default 127.0.0.1:6379, db 15).
- Spark: one ``local[2]`` session per test session.
- MongoDB: ``GLOBALMART_TEST_MONGODB_URL`` selects a real server; unset, mongomock stands in
  (no MongoDB server can run on the development machines).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
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


def delete_topics(bootstrap_servers: str, timeout: float = 30.0) -> list[str]:
    """Delete every topic but Kafka's internal ones, and every consumer group, and wait until
    the broker no longer lists them; return the topics deleted."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=timeout).topics if not t.startswith("__")]
    groups = [g.group_id for g in admin.list_consumer_groups(
        request_timeout=timeout).result(timeout=timeout).valid]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=timeout).values():
            future.result(timeout=timeout)
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=timeout).values():
            future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while set(topics) & set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics still listed {timeout:.0f} s after their deletion")
        time.sleep(0.05)  # polling interval of a condition with a deadline
    return topics


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Apache Kafka broker for the test session."""
    server = EmbeddedBroker(free_port(), tmp_path_factory.mktemp("kafka"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(kafka_server: EmbeddedBroker) -> Iterator[EmbeddedBroker]:
    """The session's broker, without topics; what the test created is deleted after it."""
    yield kafka_server
    delete_topics(kafka_server.bootstrap_servers)


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
