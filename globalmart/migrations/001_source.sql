-- Operational source data the generator writes (the warehouse reads its dimensions from here)
-- and the ground truth of the anomalies it injected (never marked in the events themselves).
CREATE SCHEMA IF NOT EXISTS source;

CREATE TABLE IF NOT EXISTS source.customers (
    user_id      text PRIMARY KEY,
    full_name    text NOT NULL,
    email        text NOT NULL,
    country      text NOT NULL,
    city         text NOT NULL,
    signup_date  date NOT NULL,
    loyalty_tier text NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS source.products (
    product_id    text PRIMARY KEY,
    product_name  text NOT NULL,
    category      text NOT NULL,
    brand         text NOT NULL,
    list_price    numeric(12, 2) NOT NULL CHECK (list_price > 0),
    initial_stock integer NOT NULL CHECK (initial_stock >= 0),
    updated_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS products_category_idx ON source.products (category);

CREATE TABLE IF NOT EXISTS source.injected_anomalies (
    transaction_id text NOT NULL,
    anomaly_type   text NOT NULL CHECK (anomaly_type IN
                       ('high_value', 'unusual_quantity', 'rapid_fire', 'total_mismatch')),
    user_id        text NOT NULL,
    event_time     timestamptz NOT NULL,
    detail         text NOT NULL,
    PRIMARY KEY (transaction_id, anomaly_type)
);
