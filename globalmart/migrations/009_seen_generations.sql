-- De-duplication state in two generations instead of one table pruned row by row. A batch's
-- new ids go into the current generation; once every id of the older one is behind the
-- watermark, the older one is emptied with TRUNCATE and becomes the current one. Forgetting
-- ids then leaves no dead rows, so there is nothing to delete or vacuum (at 10,000 events/s a
-- 10-minute watermark forgot 10,000 ids a second, and each vacuum scanned the whole key).
-- An id is remembered for between one and two watermarks' worth of event time.
ALTER TABLE stream_state.seen_events RENAME TO seen_events_before_009;

CREATE TABLE stream_state.seen_events (
    generation smallint NOT NULL,
    topic      text NOT NULL,
    event_id   uuid NOT NULL,
    event_time timestamptz NOT NULL,
    PRIMARY KEY (event_id, topic, generation)
) PARTITION BY LIST (generation);
CREATE TABLE stream_state.seen_events_0 PARTITION OF stream_state.seen_events FOR VALUES IN (0);
CREATE TABLE stream_state.seen_events_1 PARTITION OF stream_state.seen_events FOR VALUES IN (1);

-- Which generation is current, and the highest event time each holds (null: empty).
CREATE TABLE stream_state.seen_generations (
    generation smallint PRIMARY KEY CHECK (generation IN (0, 1)),
    current    boolean NOT NULL,
    newest     timestamptz
);
INSERT INTO stream_state.seen_generations (generation, current, newest)
SELECT 0, true, max(event_time) FROM stream_state.seen_events_before_009
UNION ALL SELECT 1, false, NULL;

INSERT INTO stream_state.seen_events (generation, topic, event_id, event_time)
SELECT DISTINCT ON (event_id, topic) 0, topic, event_id, event_time
FROM stream_state.seen_events_before_009;
DROP TABLE stream_state.seen_events_before_009;
