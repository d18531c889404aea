"""Parsing and validation of Kafka records against the event contracts.

Validation runs the contract models of :mod:`globalmart.contracts` themselves, once per
record, so the stream accepts and rejects exactly what the contract does. A valid record keeps
its contract model (exact decimals, UTC-aware times); the transforms read their columns from
it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter

from globalmart.contracts import INPUT_TOPICS, Event, parse_event
from globalmart.raw_layer import raw_arrow_schema

MAX_REASON = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NAT = np.iinfo("int64").min
KAFKA_COLUMNS = ["topic", "partition", "offset", "value"]
VALIDATED_COLUMNS = ["topic", "kafka_partition", "kafka_offset", "reason", "payload", "event",
                     "event_id", "event_time", "digest"]


def _reason(exc: Exception) -> str:
    """A short, human reason from a validation error."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False, include_input=False)[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "payload"
            parts.append(f"{where}: {error['msg']}")
        text = "; ".join(parts)
    else:
        text = str(exc)
    return text[:MAX_REASON]


def check_record(topic: str | None, value: bytes | None) -> tuple[str | None, Event | str]:
    """Validate one record: ``(None, event)`` when valid, else ``(reason, payload text)``,
    the payload being the original bytes decoded as UTF-8 with replacement characters."""
    raw = bytes(value) if value is not None else b""
    if topic not in INPUT_TOPICS:
        return f"unknown topic {topic!r}", raw.decode("utf-8", "replace")
    if not raw:
        return "empty payload", ""
    try:
        return None, parse_event(topic, raw)
    except Exception as exc:  # noqa: BLE001 - every failure is a rejection with its reason
        return _reason(exc), raw.decode("utf-8", "replace")


def kafka_records(rows: Sequence[tuple[str, int, int, bytes | str | None]]) -> pa.Table:
    """Kafka records ``(topic, partition, offset, value)`` as the Arrow table a micro-batch
    collects (for tests and tools; the stream gets it from Spark)."""
    values = [v.encode() if isinstance(v, str) else v for _, _, _, v in rows]
    return pa.table({"topic": pa.array([r[0] for r in rows], pa.string()),
                     "partition": pa.array([r[1] for r in rows], pa.int32()),
                     "offset": pa.array([r[2] for r in rows], pa.int64()),
                     "value": pa.array(values, pa.binary())})


def validate(records: pa.Table) -> pd.DataFrame:
    """Kafka records (``topic``, ``partition``, ``offset``, ``value``) with their verdict: one row
    per record with ``reason`` (None when valid), ``payload`` (the original text when rejected),
    ``event`` (the contract model when valid), ``event_id``, ``event_time`` and ``digest`` (of
    the record's bytes when valid: two copies of an event id with other bytes conflict)."""
    topics = records.column("topic").to_pylist()
    values = records.column("value").to_pylist()
    verdicts = [check_record(t, v) for t, v in zip(topics, values, strict=True)]
    events: list[Any] = [None if reason else found for reason, found in verdicts]
    return pd.DataFrame({
        "topic": topics,
        "kafka_partition": records.column("partition").to_pylist(),
        "kafka_offset": records.column("offset").to_pylist(),
        "reason": [reason for reason, _ in verdicts],
        "payload": [found if reason else None for reason, found in verdicts],
        "event": events,
        "event_id": [None if e is None else str(e.event_id) for e in events],
        "event_time": pd.to_datetime(
            np.array([_NAT if e is None else (e.event_time - _EPOCH) // _MICROSECOND
                      for e in events], dtype="int64"), unit="us", utc=True),
        "digest": [None if e is None else hashlib.blake2b(v, digest_size=16).digest()
                   for e, v in zip(events, values, strict=True)],
    }, columns=VALIDATED_COLUMNS)


def reject(validated: pd.DataFrame, records: pa.Table, reasons: dict[int, str]) -> pd.DataFrame:
    """The records at the positions of ``reasons`` (valid by the contract, but a conflicting
    duplicate or failing to be written) as rejected records, with their reason and their
    original text as payload."""
    values = records.column("value")
    chosen = validated.loc[list(reasons)].copy()
    chosen["reason"] = [reasons[i][:MAX_REASON] for i in reasons]
    chosen["payload"] = [bytes(values[i].as_py() or b"").decode("utf-8", "replace")
                         for i in reasons]
    chosen["event"] = None
    chosen["event_id"] = None
    chosen["event_time"] = pd.Series(pd.NaT, index=chosen.index,
                                      dtype=validated["event_time"].dtype)
    chosen["digest"] = None
    return chosen


def rejected(validated: pd.DataFrame) -> pd.DataFrame:
    """The invalid records: topic, kafka_partition, kafka_offset, reason and payload."""
    return validated.loc[validated["reason"].notna(),
                         ["topic", "kafka_partition", "kafka_offset", "reason", "payload"]]


def valid(validated: pd.DataFrame) -> pd.DataFrame:
    """The valid records."""
    return validated[validated["reason"].isna()]


def of_topic(events: pd.DataFrame, topic: str) -> pd.DataFrame:
    """The valid events of ``topic`` among ``events``."""
    return events[(events["topic"] == topic) & events["reason"].isna()]


def accepted(validated: pd.DataFrame, topic: str) -> pa.Table:
    """The valid events of ``topic`` as rows of the raw layer: every contract field (decimals
    exact, times in UTC), ``kafka_partition``, ``kafka_offset`` and ``event_date`` (UTC date of
    ``event_time``), in :func:`globalmart.raw_layer.raw_schema` order."""
    chosen = of_topic(validated, topic)
    schema = raw_arrow_schema(topic)
    contract = INPUT_TOPICS[topic][0]
    rows = _dumper(contract).dump_python(list(chosen["event"]))  # one call, not one per event
    columns = pa.Table.from_pylist(rows, schema=pa.schema(
        [f for f in schema if f.name in contract.model_fields and f.name != "event_id"]))
    table = pa.table({
        **{name: columns[name] for name in columns.column_names},
        "event_id": pa.array(chosen["event_id"], pa.string()),
        "kafka_partition": pa.array(chosen["kafka_partition"], pa.int32()),
        "kafka_offset": pa.array(chosen["kafka_offset"], pa.int64())}).select(schema.names)
    return table.append_column("event_date", pc.cast(table["event_time"], pa.date32()))


@cache
def _dumper(contract: type[Event]) -> TypeAdapter:
    return TypeAdapter(list[contract])  # type: ignore[valid-type]
