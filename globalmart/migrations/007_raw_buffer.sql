-- Raw-layer rows accepted by the realtime query and not yet in a Parquet file: one Arrow IPC
-- blob per batch, topic and event date, written in the batch's transaction. The raw-layer
-- flush turns them into one file per topic and day and deletes them in its own transaction.
CREATE TABLE IF NOT EXISTS stream_state.raw_buffer (
    batch_id       bigint NOT NULL,
    topic          text NOT NULL,
    event_date     date NOT NULL,
    row_count      integer NOT NULL,
    max_event_time timestamptz NOT NULL,
    data           bytea NOT NULL,
    PRIMARY KEY (batch_id, topic, event_date)
);
-- The blobs are compressed already.
ALTER TABLE stream_state.raw_buffer ALTER COLUMN data SET STORAGE EXTERNAL;
