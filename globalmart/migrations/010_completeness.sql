-- Completeness of the raw layer, and the stream's ledger of late events.

-- The Kafka offsets each micro-batch read up to (the next offset per input partition), written
-- in the batch's transaction; the raw-layer flush folds the batches it wrote into raw_progress.
CREATE TABLE IF NOT EXISTS stream_state.batch_offsets (
    query_name      text NOT NULL,
    batch_id        bigint NOT NULL,
    topic           text NOT NULL,
    kafka_partition int NOT NULL,
    next_offset     bigint NOT NULL,
    PRIMARY KEY (query_name, batch_id, topic, kafka_partition)
);

-- How far the raw layer holds each input partition: every record below next_offset is in a
-- Parquet file (or in the dead letter, or was a duplicate). The Dagster sensor builds a day once
-- this has reached the end offsets the broker had when the day closed (the day's fence).
CREATE TABLE IF NOT EXISTS public.raw_progress (
    topic           text NOT NULL,
    kafka_partition int NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition)
);

-- Per event day, the transactions the stream accepted into the real-time tables and those it
-- left out as later than its watermark (they still reach the raw layer and the warehouse):
-- warehouse revenue of a day = accepted + left out, to the cent.
CREATE TABLE IF NOT EXISTS public.stream_day_ledger (
    event_date            date PRIMARY KEY,
    accepted_transactions bigint NOT NULL DEFAULT 0,
    accepted_revenue      numeric(16, 2) NOT NULL DEFAULT 0,
    late_transactions     bigint NOT NULL DEFAULT 0,
    late_revenue          numeric(16, 2) NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The late events already counted (stock, the ledger, the raw layer), so that a late event
-- sent twice is counted once. (On-time events are de-duplicated by seen_events.)
CREATE TABLE IF NOT EXISTS stream_state.late_events (
    topic      text NOT NULL,
    event_id   uuid NOT NULL,
    event_date date NOT NULL,
    digest     bytea,
    PRIMARY KEY (event_id, topic)
);

-- A batch whose write fails on some records is written in parts (the records that cannot be
-- stored go to the dead letter): each part buffers its own raw-layer rows.
ALTER TABLE stream_state.raw_buffer ADD COLUMN IF NOT EXISTS part integer NOT NULL DEFAULT 0;
ALTER TABLE stream_state.raw_buffer DROP CONSTRAINT IF EXISTS raw_buffer_pkey;
ALTER TABLE stream_state.raw_buffer ADD PRIMARY KEY (batch_id, part, topic, event_date);

-- A digest of each event's bytes, so that a second event with a known id and other bytes (a
-- conflicting duplicate) is told from a resend and goes to the dead letter.
ALTER TABLE stream_state.seen_events ADD COLUMN IF NOT EXISTS digest bytea;
