"""Shared fixtures: the real services of this machine.

- PostgreSQL: ``GLOBALMART_TEST_DATABASE_URL`` (default the server on 127.0.0.1:5432, trust
  auth). Each test session gets its own freshly migrated database, dropped at the end, so
  parallel sessions never share state.
- Kafka: one Apache Kafka broker (KRaft, the jars ``make install`` fetched) on a free port for
  the whole session; ``broker`` hands it to a test with no topics and deletes every topic and
  consumer group the test made afterwards, so tests stay independent.
- Redis: ``GLOBALMART_TEST_REDIS_URL`` (default 127.0.0.1:6379, db 15).
- Spark: one ``local[2]`` session per test session.
- MongoDB: a SecantusDB server (MongoDB wire protocol, the ``secantusdb`` dev dependency) on a
  free port of 127.0.0.1, its data in a tmp dir, one per test session;
  ``GLOBALMART_TEST_MONGODB_URL`` selects a real ``mongod`` instead. Each test that asks for
  ``mongo_marts`` gets its own database, dropped after the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymongo
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql
from pymongo.errors import PyMongoError

from globalmart import db
from globalmart.embedded import EmbeddedBroker, free_port, wait_for_port

if TYPE_CHECKING:
    from globalmart_dagster.resources import MongoMartIOManager

ADMIN_URL = os.environ.get(
    "GLOBALMART_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("GLOBALMART_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MONGODB_URL = os.environ.get("GLOBALMART_TEST_MONGODB_URL")
MONGODB_READY_TIMEOUT_S = 30.0


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


def _wait_for_mongodb(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until the server listens, then until it answers ``ping`` (each try waits at most 0.25 s
    for it; a failed try's client would wait 0.5 s before looking again, hence the port
    first)."""
    wait_for_port(port, process, "SecantusDB", log)
    url = f"mongodb://127.0.0.1:{port}/"
    deadline = time.monotonic() + MONGODB_READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SecantusDB exited with {process.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        client: pymongo.MongoClient[dict[str, Any]]
        try:
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=250,
                                     connectTimeoutMS=250) as client:
                client.admin.command("ping")
            return
        except PyMongoError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"SecantusDB on {url} did not answer ping within "
                                   f"{MONGODB_READY_TIMEOUT_S:.0f} s; see {log}") from None


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory) -> Iterator[str]:
    """``GLOBALMART_TEST_MONGODB_URL`` when set; else a SecantusDB server for the session.

    SecantusDB runs as its own process (``python -m secantus``) on a free port of 127.0.0.1,
    standalone as the compose file's ``mongod`` is, with WiredTiger data in a tmp dir; it is
    stopped (SIGTERM, then SIGKILL) at the end of the session."""
    if MONGODB_URL:
        yield MONGODB_URL
        return
    home = tmp_path_factory.mktemp("secantusdb")
    config = home / "secantusd.toml"
    config.write_text("# empty: the flags say everything (and no secantusd.toml is discovered)\n")
    log = home / "secantusd.log"
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}/"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port), "--storage-path", str(home / "data"), "--standalone"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_mongodb(port, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def mongo_marts(mongodb_url: str) -> Iterator[MongoMartIOManager]:
    """The MongoDB mart IO manager on a database of its own, dropped after the test."""
    from globalmart_dagster.resources import MongoMartIOManager

    database = f"gm_test_{uuid.uuid4().hex[:10]}"
    manager = MongoMartIOManager(mongodb_url=mongodb_url, database=database)
    yield manager
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongodb_url) as client:
        client.drop_database(manager.database)


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run."""
    from globalmart.spark import build_spark_session

    session = build_spark_session("globalmart-tests", master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()
