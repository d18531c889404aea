-- Real-time tables written by the streaming application (idempotent upserts per batch).

CREATE TABLE IF NOT EXISTS public.sales_metrics (
    window_start          timestamptz NOT NULL,
    window_end            timestamptz NOT NULL,
    category              text NOT NULL,
    country               text NOT NULL,
    total_amount          numeric(14, 2) NOT NULL,   -- Σ quantity × unit_price of the lines
    transaction_count     bigint NOT NULL,           -- transactions with a line in this category
    avg_transaction_value numeric(14, 2) NOT NULL,
    units_sold            bigint NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, category, country)
);

CREATE TABLE IF NOT EXISTS public.sales_metrics_hourly (LIKE public.sales_metrics INCLUDING ALL);

-- Order-level figures per minute and country (a transaction counted once, whatever its lines).
CREATE TABLE IF NOT EXISTS public.order_metrics (
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    country       text NOT NULL,
    order_count   bigint NOT NULL,
    revenue       numeric(14, 2) NOT NULL,           -- Σ lines
    billed_amount numeric(14, 2) NOT NULL,           -- Σ total_amount as sent
    units_sold    bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, country)
);

CREATE TABLE IF NOT EXISTS public.transaction_anomalies (
    transaction_id text NOT NULL,
    user_id        text NOT NULL,
    amount         numeric(14, 2) NOT NULL,
    anomaly_score  double precision NOT NULL CHECK (anomaly_score BETWEEN 0 AND 1),
    anomaly_type   text NOT NULL,
    detected_at    timestamptz NOT NULL,
    description    text NOT NULL,
    event_time     timestamptz NOT NULL,
    PRIMARY KEY (transaction_id, anomaly_type)
);
CREATE INDEX IF NOT EXISTS transaction_anomalies_detected_idx ON public.transaction_anomalies (detected_at);

CREATE TABLE IF NOT EXISTS public.inventory_status (
    product_id     text PRIMARY KEY,
    product_name   text NOT NULL,
    category       text NOT NULL,
    initial_stock  integer NOT NULL,
    units_sold     bigint NOT NULL,
    units_restocked bigint NOT NULL,
    units_adjusted bigint NOT NULL,
    current_stock  bigint NOT NULL,
    status         text NOT NULL CHECK (status IN ('ok', 'low', 'critical', 'out')),
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS inventory_status_status_idx ON public.inventory_status (status);

-- One row per session: events sharing a session_id, split where the user was inactive for more
-- than 30 minutes (so a session_id can have several rows, told apart by session_start).
CREATE TABLE IF NOT EXISTS public.session_metrics (
    session_id       text NOT NULL,
    user_id          text NOT NULL,
    session_start    timestamptz NOT NULL,
    session_end      timestamptz NOT NULL,
    duration_seconds double precision NOT NULL,
    page_views       integer NOT NULL,
    cart_adds        integer NOT NULL,
    cart_removes     integer NOT NULL,
    purchases        integer NOT NULL,
    revenue          numeric(14, 2) NOT NULL,
    converted        boolean NOT NULL,
    last_cart_add_at timestamptz,                  -- null when nothing was added
    purchased_after_last_add boolean NOT NULL,     -- a purchase within 15 minutes of it
    purchase_times   timestamptz[] NOT NULL DEFAULT '{}',  -- to merge sessions across batches
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, session_start)
);
CREATE INDEX IF NOT EXISTS session_metrics_end_idx ON public.session_metrics (session_end);
CREATE INDEX IF NOT EXISTS session_metrics_cart_idx ON public.session_metrics (last_cart_add_at)
    WHERE last_cart_add_at IS NOT NULL AND NOT purchased_after_last_add;

-- Decided once the event-time watermark passes last_cart_event_at + 15 minutes.
CREATE TABLE IF NOT EXISTS public.cart_abandonment (
    session_id        text NOT NULL,
    session_start     timestamptz NOT NULL,
    user_id           text NOT NULL,
    last_cart_event_at timestamptz NOT NULL,
    items_added       integer NOT NULL,
    detected_at       timestamptz NOT NULL,
    PRIMARY KEY (session_id, session_start)
);

CREATE TABLE IF NOT EXISTS public.alerts (
    alert_id    uuid PRIMARY KEY,
    alert_type  text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    entity_id   text NOT NULL,
    message     text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_created_idx ON public.alerts (created_at);

CREATE TABLE IF NOT EXISTS public.dead_letter (
    topic        text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    reason       text NOT NULL,
    payload      text NOT NULL,
    rejected_at  timestamptz NOT NULL,
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);

-- One row per query, micro-batch and topic: what the monitoring dashboard and the Dagster
-- sensor read.
CREATE TABLE IF NOT EXISTS public.pipeline_metrics (
    query_name                text NOT NULL,
    batch_id                  bigint NOT NULL,
    topic                     text NOT NULL,
    processed_at              timestamptz NOT NULL,
    input_rows                bigint NOT NULL,
    input_rows_per_second     double precision NOT NULL,
    processed_rows_per_second double precision NOT NULL,
    batch_duration_ms         bigint NOT NULL,
    lag_records               bigint NOT NULL,
    rows_written              bigint NOT NULL,
    max_event_time            timestamptz,
    PRIMARY KEY (query_name, batch_id, topic)
);
CREATE INDEX IF NOT EXISTS pipeline_metrics_processed_idx ON public.pipeline_metrics (processed_at);

-- Private state of the streaming application (not read by other components).
CREATE SCHEMA IF NOT EXISTS stream_state;

-- Micro-batches whose additive writes are committed, written in the same transaction as them:
-- a batch Spark runs again after a crash is recognised and skipped.
CREATE TABLE IF NOT EXISTS stream_state.batch_commits (
    query_name   text NOT NULL,
    batch_id     bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_name, batch_id)
);

-- Recent transactions per user, for the rapid-fire rule across micro-batches (pruned behind
-- the watermark).
CREATE TABLE IF NOT EXISTS stream_state.recent_transactions (
    user_id        text NOT NULL,
    transaction_id text NOT NULL,
    event_time     timestamptz NOT NULL,
    amount         numeric(14, 2) NOT NULL,
    PRIMARY KEY (user_id, transaction_id)
);
CREATE INDEX IF NOT EXISTS recent_transactions_time_idx
    ON stream_state.recent_transactions (user_id, event_time);
CREATE INDEX IF NOT EXISTS recent_transactions_prune_idx
    ON stream_state.recent_transactions (event_time);

-- Stock movements per product, whether or not the product is in source.products yet.
CREATE TABLE IF NOT EXISTS stream_state.inventory_counters (
    product_id      text PRIMARY KEY,
    units_sold      bigint NOT NULL,
    units_restocked bigint NOT NULL,
    units_adjusted  bigint NOT NULL
);

-- Highest event time and the watermark decisions were last made at, per query.
CREATE TABLE IF NOT EXISTS stream_state.query_progress (
    query_name     text PRIMARY KEY,
    max_event_time timestamptz NOT NULL,
    decided_until  timestamptz
);

CREATE OR REPLACE FUNCTION stream_state.stock_status(stock bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN stock <= 0 THEN 'out' WHEN stock <= 5 THEN 'critical'
                WHEN stock <= 10 THEN 'low' ELSE 'ok' END
$$;

CREATE OR REPLACE FUNCTION stream_state.status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status WHEN 'ok' THEN 0 WHEN 'low' THEN 1 WHEN 'critical' THEN 2 ELSE 3 END
$$;
