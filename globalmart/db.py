"""PostgreSQL access and the schema migration runner.

Migrations are numbered SQL files in ``globalmart/migrations`` (``NNN_name.sql``). Each is
applied once, in its own transaction, under an advisory lock, and recorded with its checksum
in ``public.schema_migrations``; re-running ``globalmart db upgrade`` is a no-op. Editing a
file that is already applied is refused: add a new file instead.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

log = logging.getLogger(__name__)

_LOCK_ID = 0x676D6967  # "gmig": serialises concurrent upgrades


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """An applied migration was changed, or a file name is not ``NNN_name.sql``."""


def connect(url: str, **kwargs) -> psycopg.Connection:
    """Open a connection with a short, clear failure when the server is not there."""
    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_database(url: str) -> bool:
    """Create the URL's database if it does not exist (connecting to ``postgres``).

    Returns True when it was created.
    """
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def migrations() -> list[Migration]:
    """The migration files shipped with the package, in version order."""
    found = []
    for entry in resources.files("globalmart.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name.removesuffix(".sql")
        number, _, name = stem.partition("_")
        if not number.isdigit() or not name:
            raise MigrationError(f"migration file {entry.name!r} is not named NNN_name.sql")
        found.append(Migration(int(number), name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {versions}")
    return found


def upgrade(url: str) -> list[Migration]:
    """Apply every pending migration; return the ones applied now."""
    applied_now = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS public.schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done: dict[int, str] = dict(
                conn.execute("SELECT version, checksum FROM public.schema_migrations").fetchall()
            )
            for migration in migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:03d}_{migration.name} changed after it "
                            "was applied; add a new migration instead of editing this one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(migration.sql))
                    conn.execute(
                        "INSERT INTO public.schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %03d_%s", migration.version, migration.name)
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now


def copy_arrow(conn: psycopg.Connection, table: sql.Composable, data: pa.Table) -> int:
    """Bulk-load an Arrow table into ``table`` (same column names) with COPY ... CSV.

    Empty strings and nulls stay distinct: strings are quoted, nulls are empty fields."""
    if data.num_rows == 0:
        return 0
    buffer = io.BytesIO()
    pa_csv.write_csv(_utc_text(data), buffer,
                     pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in data.column_names)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(table, columns)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(buffer.getvalue())
    return data.num_rows


def _utc_text(data: pa.Table) -> pa.Table:
    """``data`` with its time-zone-aware timestamps as ISO 8601 text in UTC, to the microsecond
    (PostgreSQL's precision), formatted by numpy: Arrow's CSV writer takes ~4 times as long."""
    for index, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            column = data.column(index).combine_chunks()
            micros = column.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
            text = np.datetime_as_string(micros.fill_null(0).to_numpy().astype("datetime64[us]"),
                                         unit="us", timezone="UTC")
            nulls = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
            data = data.set_column(index, field.name, pa.array(text, pa.string(), mask=nulls))
    return data
