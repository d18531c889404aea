"""What the code location's resources are (their wiring from the environment lives in
``wiring.py``).

- :class:`WarehouseResource`: the PostgreSQL database that holds ``source``, ``warehouse``,
  the streaming tables and (with the PostgreSQL backend) ``marts``.
- :class:`LakeResource`: the Parquet lake the streaming app writes (a path or a URL).
- :class:`KafkaResource`: the broker, for the sensor's end offsets.
- :class:`DayBuildsResource`: how the complete-days sensor paces the builds.
- Mart storage is an IO manager per backend behind one interface, :class:`MartIOManager`:
  mart assets return a pandas DataFrame and never know where it goes.
  :class:`PostgresMartIOManager` writes ``marts.<asset>``; :class:`MongoMartIOManager` writes the
  seed's ``globalmart_dw.<asset>`` collections.

A mart declares how its output replaces what is stored with definition metadata
``{"replace_by": "<column>"}``, the column holding the partition's day: the rows (documents) of
the run's days are deleted first, in the same transaction; without it the whole table is
replaced.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.fs as pa_fs
from bson.codec_options import CodecOptions, TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128
from psycopg import sql
from psycopg.rows import dict_row

from globalmart import db
from globalmart.contracts import Alert
from globalmart.db import copy_arrow
from globalmart.lake import filesystem
from globalmart.raw_layer import (
    day_directory,
    day_of_directory,
    is_raw_file,
    raw_arrow_schema,
    raw_path,
)
from globalmart_dagster.constants import MARTS_SCHEMA

REPLACE_BY = "replace_by"


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL database of the platform (source, streaming, warehouse and mart tables)."""

    database_url: str

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error (one transaction)."""
        conn = db.connect(self.database_url)
        try:
            with conn.transaction():
                yield conn
        finally:
            conn.close()

    def query_frame(self, query: str | sql.Composable, params: dict[str, Any] | tuple | None = None
                    ) -> pd.DataFrame:
        """Run a read-only query and return its rows as a DataFrame (column names kept)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            columns = [c.name for c in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=columns)

    def rows(self, query: str | sql.Composable, params: dict[str, Any] | tuple | None = None
             ) -> list[dict[str, Any]]:
        """Run a read-only query and return its rows as dicts."""
        with self.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall()

    def scalar(self, query: str | sql.Composable,
               params: dict[str, Any] | tuple | None = None) -> Any:
        """The first column of the first row of a query (None when there is no row)."""
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake root (a local path or a URL pyarrow understands, e.g. ``s3://``)."""

    path: str

    def raw_path(self, topic: str) -> str:
        """Root of a topic's raw layer: ``<lake>/raw/<topic>``."""
        return raw_path(self.path, topic)

    def raw_day_path(self, topic: str, day: date) -> str:
        """Directory of one day of a topic: ``<lake>/raw/<topic>/event_date=YYYY-MM-DD``."""
        return day_directory(self.raw_path(topic), day)

    def raw_days(self, topic: str) -> list[date]:
        """The event dates present in a topic's raw layer, sorted (none if it does not exist)."""
        fs, root = filesystem(self.raw_path(topic))
        selector = pa_fs.FileSelector(root, allow_not_found=True)
        days = []
        for info in fs.get_file_info(selector):
            day = day_of_directory(info.base_name)
            if info.type == pa_fs.FileType.Directory and day is not None:
                days.append(day)
        return sorted(days)

    def raw_files(self, topic: str) -> dict[date, list[tuple[str, int]]]:
        """Every Parquet file of a topic's raw layer, as (name, bytes) sorted by name, per event
        date (one recursive listing)."""
        fs, root = filesystem(self.raw_path(topic))
        selector = pa_fs.FileSelector(root, allow_not_found=True, recursive=True)
        files: dict[date, list[tuple[str, int]]] = {}
        for info in fs.get_file_info(selector):
            folder = info.path.rsplit("/", 2)[-2] if info.path.count("/") >= 1 else ""
            day = day_of_directory(folder)
            if info.type != pa_fs.FileType.File or not is_raw_file(info.base_name) or day is None:
                continue
            files.setdefault(day, []).append((info.base_name, info.size or 0))
        return {day: sorted(entries) for day, entries in files.items()}

    def read_raw_day(self, topic: str, day: date) -> pa.Table:
        """Every event of one day of a topic's raw layer (an empty table when there is none)."""
        import pyarrow.dataset as pa_ds

        fs, root = filesystem(self.raw_day_path(topic, day))
        if fs.get_file_info(root).type != pa_fs.FileType.Directory:
            return raw_arrow_schema(topic).empty_table()
        return pa_ds.dataset(root, filesystem=fs, format="parquet",
                             exclude_invalid_files=True).to_table()

    def raw_day_files(self, topic: str, day: date) -> tuple[int, int]:
        """(Parquet files, bytes) of one day of a topic; (0, 0) when the day is absent."""
        fs, root = filesystem(self.raw_day_path(topic, day))
        selector = pa_fs.FileSelector(root, allow_not_found=True, recursive=True)
        files = [i for i in fs.get_file_info(selector)
                 if i.type == pa_fs.FileType.File and is_raw_file(i.base_name)]
        return len(files), sum(i.size or 0 for i in files)


class DayBuildsResource(dg.ConfigurableResource):
    """How the complete-days sensor paces the builds: how far the stream's event time must pass
    midnight before a day counts as closed, and how many days one tick may request."""

    day_close_delay_minutes: int = 5
    max_days_per_tick: int = 7


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster the streaming app consumes: its end offsets, and the alerts topic."""

    bootstrap_servers: str
    timeout_seconds: float = 5.0

    def partition_end_offsets(self, topics: list[str] | tuple[str, ...]
                              ) -> dict[tuple[str, int], int]:
        """The end offset of every partition of ``topics`` (absent topics are absent)."""
        from globalmart.kafka import end_offsets

        return end_offsets(self.bootstrap_servers, topics, timeout=self.timeout_seconds)

    def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        """Produce alerts to the ``alerts`` topic and wait until the broker has them."""
        from globalmart.alerts import produce_alerts

        produce_alerts(self.bootstrap_servers, alerts, timeout=self.timeout_seconds)


def _partition_days(context: dg.OutputContext | dg.InputContext) -> list[date]:
    return [date.fromisoformat(key) for key in context.asset_partition_keys]


class MartIOManager(dg.ConfigurableIOManager):
    """Stores mart DataFrames; one subclass per backend. Assets only return DataFrames."""

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        """Replace the stored rows the frame supersedes (see module doc) and record counts."""
        name = context.asset_key.path[-1]
        replace_by = (context.definition_metadata or {}).get(REPLACE_BY)
        if replace_by is not None and not context.has_asset_partitions:
            raise ValueError(f"mart {name}: {REPLACE_BY} needs a partitioned asset")
        days = _partition_days(context) if replace_by is not None else []
        self.replace(name, obj, replace_by, days)
        context.add_output_metadata({"rows": len(obj), "backend": self.backend_name})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The stored mart: the partition's snapshot for a partitioned mart, else all rows."""
        upstream = context.upstream_output
        replace_by = (upstream.definition_metadata or {}).get(REPLACE_BY) if upstream else None
        if replace_by and context.has_asset_partitions:
            return self.read(context.asset_key.path[-1], replace_by, _partition_days(context))
        return self.read(context.asset_key.path[-1])

    @property
    @abstractmethod
    def backend_name(self) -> str:
        """Short name shown in materialization metadata."""

    @abstractmethod
    def replace(self, name: str, frame: pd.DataFrame, replace_by: str | None,
                days: list[date]) -> None:
        """Replace mart ``name``: the rows whose ``replace_by`` is one of ``days`` or, without
        ``replace_by``, all rows; with ``frame``."""

    @abstractmethod
    def read(self, name: str, column: str | None = None,
             values: list[Any] | None = None) -> pd.DataFrame:
        """Rows of mart ``name`` (those whose ``column`` is one of ``values`` when given)."""


class PostgresMartIOManager(MartIOManager):
    """Marts in PostgreSQL tables ``marts.<asset>`` (globalmart/migrations/003_marts.sql)."""

    database_url: str

    @property
    def backend_name(self) -> str:
        return "postgres"

    def replace(self, name: str, frame: pd.DataFrame, replace_by: str | None,
                days: list[date]) -> None:
        table = sql.Identifier(MARTS_SCHEMA, name)
        data = pa.Table.from_pandas(frame, preserve_index=False)
        with db.connect(self.database_url) as conn, conn.transaction():
            if replace_by is None:
                conn.execute(sql.SQL("DELETE FROM {}").format(table))
            else:
                conn.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                    table, sql.Identifier(replace_by)), (days,))
            copy_arrow(conn, table, data)

    def read(self, name: str, column: str | None = None,
             values: list[Any] | None = None) -> pd.DataFrame:
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(MARTS_SCHEMA, name))
        params: tuple = ()
        if column is not None:
            query = sql.SQL("{} WHERE {} = ANY(%s)").format(query, sql.Identifier(column))
            params = (list(values or []),)
        with db.connect(self.database_url) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            columns = [c.name for c in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=columns)


class _DecimalCodec(TypeCodec):
    """Money both ways exactly: :class:`~decimal.Decimal` is stored as BSON ``Decimal128`` and
    read back as ``Decimal`` (as the PostgreSQL backend returns its ``numeric`` columns)."""

    python_type = Decimal
    bson_type = Decimal128

    def transform_python(self, value: Decimal) -> Decimal128:
        return Decimal128(value)

    def transform_bson(self, value: Decimal128) -> Decimal:
        return value.to_decimal()


# Datetimes come back aware, in UTC; decimals as above.
_CODEC_OPTIONS: CodecOptions = CodecOptions(tz_aware=True, tzinfo=UTC,
                                            type_registry=TypeRegistry([_DecimalCodec()]))


def _to_bson(value: Any) -> Any:
    """BSON has no date: dates become UTC midnights (decimals become ``Decimal128`` through
    :class:`_DecimalCodec`); NaN becomes null and numpy scalars Python ones."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, float) and value != value:  # NaN
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


class MongoMartIOManager(MartIOManager):
    """Marts in MongoDB collections ``<database>.<asset>`` (the seed's ``globalmart_dw``).

    Money (``Decimal``) is stored as ``Decimal128`` and read back as ``Decimal``, exact;
    datetimes come back timezone-aware in UTC. Replacement is a delete + insert; MongoDB without
    a replica set has no multi-document transaction, so a reader can briefly see the old
    snapshot removed before the new one is complete. Each call opens its own client and closes
    it."""

    mongodb_url: str
    database: str = "globalmart_dw"

    @property
    def backend_name(self) -> str:
        return "mongodb"

    @contextmanager
    def _collection(self, name: str) -> Iterator[Any]:
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(self.mongodb_url) as client:
            yield client.get_database(self.database, codec_options=_CODEC_OPTIONS)[name]

    def replace(self, name: str, frame: pd.DataFrame, replace_by: str | None,
                days: list[date]) -> None:
        documents = [{k: _to_bson(v) for k, v in row.items()}
                     for row in frame.to_dict(orient="records")]
        with self._collection(name) as collection:
            if replace_by is None:
                collection.delete_many({})
            else:
                collection.delete_many({replace_by: {"$in": [_to_bson(d) for d in days]}})
            if documents:
                collection.insert_many(documents)

    def read(self, name: str, column: str | None = None,
             values: list[Any] | None = None) -> pd.DataFrame:
        query = {} if column is None else {column: {"$in": [_to_bson(v) for v in values or []]}}
        with self._collection(name) as collection:
            rows = list(collection.find(query, {"_id": 0}))
        return pd.DataFrame(rows)
