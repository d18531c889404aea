"""Dead letters: the records of a batch that fail validation (or cannot be stored), produced to
the ``dead_letter`` topic (before the batch commits) and upserted into ``public.dead_letter``.
A dead letter too large for a Kafka message goes to the topic without its payload (reason,
size and SHA-256 kept), the payload whole to ``<lake>/quarantine/<topic>/`` and the table."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import psycopg

from globalmart.contracts import DEAD_LETTER_TOPIC, DeadLetter
from globalmart.lake import filesystem
from streaming.sinks.store import copy_temp, frame_rows
from streaming.sinks.topics import TopicWriter
from streaming.transforms.parse import rejected

# Kafka's default largest message (the broker's message.max.bytes, the producer's is 1,000,000),
# less room for the key and headers.
MAX_MESSAGE_BYTES = 900_000


def dead_letters(validated: pd.DataFrame, rejected_at: datetime) -> list[DeadLetter]:
    """The rejected records of a validated batch as dead letters."""
    return [DeadLetter(topic=r["topic"], partition=r["kafka_partition"],
                       offset=r["kafka_offset"], reason=r["reason"], payload=r["payload"],
                       rejected_at=rejected_at)
            for r in frame_rows(rejected(validated),
                                ["topic", "kafka_partition", "kafka_offset", "reason", "payload"])]


def quarantine(letter: DeadLetter, lake: str | None) -> DeadLetter:
    """``letter`` as it goes to the topic: itself when it fits a Kafka message, else without
    its payload, whose size and SHA-256 it keeps and which is written whole to
    ``<lake>/quarantine/<topic>/<partition>-<offset>.txt`` (when there is a lake)."""
    if len(letter.model_dump_json()) <= MAX_MESSAGE_BYTES:
        return letter
    data = letter.payload.encode()
    path = None
    if lake is not None:
        fs, root = filesystem(f"{lake.rstrip('/')}/quarantine/{letter.topic}")
        fs.create_dir(root, recursive=True)
        path = f"{root}/{letter.partition}-{letter.offset}.txt"
        with fs.open_output_stream(path) as out:
            out.write(data)
    return letter.model_copy(update={
        "payload": "", "payload_bytes": len(data),
        "payload_sha256": hashlib.sha256(data).hexdigest(), "quarantined_at": path})


def deliver_dead_letters(conn: psycopg.Connection, writer: TopicWriter | None,
                         letters: Sequence[DeadLetter], lake: str | None = None) -> int:
    """Produce ``letters`` to the ``dead_letter`` topic (key: their topic; not without a
    ``writer``; too large ones through :func:`quarantine`) and upsert them into the table, in
    the batch's transaction. Returns how many there are."""
    if letters:
        if writer is not None:
            writer.send_all(DEAD_LETTER_TOPIC, ((d.topic, quarantine(d, lake).model_dump_json())
                                                for d in letters))
        write_dead_letters(conn, letters)
    return len(letters)


def write_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Upsert dead letters (idempotent by topic, partition and offset). PostgreSQL's text
    cannot hold NUL: in the reason (a validator may quote the character it found) and the
    payload it becomes U+FFFD; the topic's message keeps it."""
    columns = ["topic", "kafka_partition", "kafka_offset", "reason", "payload", "rejected_at"]
    copy_temp(conn, "tmp_dead_letter",
              "topic text, kafka_partition int, kafka_offset bigint, reason text, payload text, "
              "rejected_at timestamptz", columns,
              ({"topic": d.topic, "kafka_partition": d.partition, "kafka_offset": d.offset,
                "reason": d.reason.replace("\x00", "\ufffd"),
                "payload": d.payload.replace("\x00", "\ufffd"),
                "rejected_at": d.rejected_at} for d in letters))
    conn.execute(f"INSERT INTO public.dead_letter ({', '.join(columns)}) "
                 f"SELECT {', '.join(columns)} FROM tmp_dead_letter "
                 "ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING")
