-- Event ids a streaming query has accepted, for de-duplication across micro-batches within the
-- watermark (rows behind it are pruned). Written in the batch's transaction, so a replayed
-- batch sees exactly the state its first attempt saw.
CREATE TABLE IF NOT EXISTS stream_state.seen_events (
    query_name text NOT NULL,
    topic      text NOT NULL,
    event_id   uuid NOT NULL,
    event_time timestamptz NOT NULL,
    PRIMARY KEY (query_name, topic, event_id)
);
CREATE INDEX IF NOT EXISTS seen_events_prune_idx ON stream_state.seen_events (query_name, event_time);
