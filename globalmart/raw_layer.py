"""The raw Parquet layer, as its writer (the stream) and its readers (Dagster) both see it:
its layout in the lake, its file names, and the Spark and Arrow schemas of the input topics and
of the layer, derived by hand from ``globalmart.contracts`` (a contract test keeps the two in
step).

Layout: ``<lake>/raw/<topic>/event_date=YYYY-MM-DD/part-<first>-<last>.parquet``, one file per
raw-layer flush and day, named after the first and last micro-batch it holds. The layer
stores every valid event with its contract fields, ``event_date`` (the partition column, UTC
date of ``event_time``) and where it came from in Kafka.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

MONEY = DecimalType(12, 2)


def _event(*fields: tuple[str, DataType]) -> StructType:
    common = [("event_id", StringType()), ("event_time", TimestampType()),
              ("schema_version", IntegerType())]
    return StructType([StructField(name, dtype, True) for name, dtype in (*common, *fields)])


LINE_ITEM = StructType([
    StructField("product_id", StringType(), True),
    StructField("category", StringType(), True),
    StructField("quantity", IntegerType(), True),
    StructField("unit_price", MONEY, True),
])

TOPIC_SCHEMAS: dict[str, StructType] = {
    "transactions": _event(
        ("transaction_id", StringType()), ("user_id", StringType()), ("session_id", StringType()),
        ("country", StringType()), ("city", StringType()), ("payment_method", StringType()),
        ("currency", StringType()), ("items", ArrayType(LINE_ITEM, True)),
        ("total_amount", MONEY),
    ),
    "product_views": _event(
        ("user_id", StringType()), ("session_id", StringType()), ("product_id", StringType()),
        ("category", StringType()), ("duration_seconds", IntegerType()), ("device", StringType()),
        ("country", StringType()),
    ),
    "cart_events": _event(
        ("user_id", StringType()), ("session_id", StringType()), ("product_id", StringType()),
        ("action", StringType()), ("quantity", IntegerType()),
    ),
    "inventory_events": _event(
        ("product_id", StringType()), ("kind", StringType()), ("quantity_delta", IntegerType()),
    ),
}

# Columns the raw layer adds to each topic's contract fields.
RAW_EXTRA_FIELDS = [
    StructField("kafka_partition", IntegerType(), False),
    StructField("kafka_offset", LongType(), False),
    StructField("event_date", DateType(), False),
]


def raw_schema(topic: str) -> StructType:
    """Schema of ``<lake>/raw/<topic>/`` Parquet files (``event_date`` is the partition)."""
    return StructType([*TOPIC_SCHEMAS[topic].fields, *RAW_EXTRA_FIELDS])


def arrow_type(dtype: DataType) -> pa.DataType:
    """The Arrow type Spark reads back as ``dtype`` (timestamps as UTC microseconds)."""
    if isinstance(dtype, StringType):
        return pa.string()
    if isinstance(dtype, BinaryType):
        return pa.binary()
    if isinstance(dtype, TimestampType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(dtype, IntegerType):
        return pa.int32()
    if isinstance(dtype, LongType):
        return pa.int64()
    if isinstance(dtype, DecimalType):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, DateType):
        return pa.date32()
    if isinstance(dtype, ArrayType):
        return pa.list_(arrow_type(dtype.elementType))
    if isinstance(dtype, StructType):
        return pa.struct([pa.field(f.name, arrow_type(f.dataType)) for f in dtype.fields])
    raise TypeError(f"no Arrow type for {dtype}")


def raw_arrow_schema(topic: str) -> pa.Schema:
    """Arrow schema of one raw-layer Parquet file of ``topic``: :func:`raw_schema` without the
    ``event_date`` partition column, which lives in the directory name."""
    return pa.schema([pa.field(f.name, arrow_type(f.dataType)) for f in raw_schema(topic).fields
                      if f.name != "event_date"])


def raw_path(lake: str, topic: str) -> str:
    """Where the raw layer of ``topic`` lives under the lake root."""
    return f"{lake.rstrip('/')}/raw/{topic}"


DAY_PREFIX = "event_date="


def day_directory(topic_root: str, day: date) -> str:
    """The partition directory of ``day`` under a topic's raw layer."""
    return f"{topic_root}/{DAY_PREFIX}{day.isoformat()}"


def day_of_directory(name: str) -> date | None:
    """The day a partition directory's name stands for (None for any other name)."""
    if not name.startswith(DAY_PREFIX):
        return None
    try:
        return date.fromisoformat(name.removeprefix(DAY_PREFIX))
    except ValueError:
        return None


FILE_SUFFIX = ".parquet"
FILE_GLOB = f"event_date=*/part-*{FILE_SUFFIX}"  # every raw file below a topic's root


def file_name(first: int, last: int) -> str:
    """The name of a raw file holding micro-batches ``first`` to ``last``."""
    return f"part-{first:010d}-{last:010d}{FILE_SUFFIX}"


def is_raw_file(name: str) -> bool:
    """A file readers take: Parquet, not a hidden one still being written."""
    return name.endswith(FILE_SUFFIX) and not name.startswith(".")


def first_batch(name: str) -> int | None:
    """The first batch id in a raw file name (None for any other file)."""
    parts = name.removesuffix(FILE_SUFFIX).split("-")
    return int(parts[1]) if len(parts) == 3 and parts[0] == "part" and parts[1].isdigit() \
        else None

