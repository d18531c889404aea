-- Star-schema warehouse built by Dagster (globalmart_dagster/defs/warehouse). Dimensions are
-- refreshed on every run; facts are daily partitions that a run replaces in one transaction
-- (DELETE the day + INSERT), so re-runs and backfills are idempotent. Facts carry no unique
-- constraint (bulk loads stay fast): the asset checks guard their keys instead.
CREATE SCHEMA IF NOT EXISTS warehouse;

CREATE TABLE IF NOT EXISTS warehouse.dim_date (
    date_key     integer PRIMARY KEY,            -- YYYYMMDD
    full_date    date NOT NULL UNIQUE,
    year         smallint NOT NULL,
    quarter      smallint NOT NULL,
    month        smallint NOT NULL,
    month_name   text NOT NULL,
    day_of_month smallint NOT NULL,
    day_of_week  smallint NOT NULL,              -- ISO: 1 = Monday
    day_name     text NOT NULL,
    iso_year     smallint NOT NULL,
    iso_week     smallint NOT NULL,
    is_weekend   boolean NOT NULL
);

-- Type-2 history of source.customers: a change closes the current version (valid_to) and opens
-- a new one. The first version of a customer covers all earlier time (valid_from = 1900-01-01)
-- and the current one all later time (valid_to = 9999-12-31; finite bounds, which every client
-- library can read), so every event finds the version in effect. A customer seen in events before the source knows
-- it is an inferred member (is_inferred), filled in place when the source row arrives.
CREATE TABLE IF NOT EXISTS warehouse.dim_customer (
    customer_key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text NOT NULL,
    full_name    text,
    email        text,
    country      text,
    city         text,
    signup_date  date,
    loyalty_tier text,
    is_inferred  boolean NOT NULL DEFAULT false,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz NOT NULL DEFAULT '9999-12-31 00:00:00+00',
    is_current   boolean NOT NULL DEFAULT true,
    CONSTRAINT dim_customer_version_uq UNIQUE (user_id, valid_from),
    CONSTRAINT dim_customer_period_ck CHECK (valid_from < valid_to)
);
CREATE UNIQUE INDEX IF NOT EXISTS dim_customer_current_uq
    ON warehouse.dim_customer (user_id) WHERE is_current;

-- Type-1 (latest values) copy of source.products plus inferred members seen only in events.
CREATE TABLE IF NOT EXISTS warehouse.dim_product (
    product_id        text PRIMARY KEY,
    product_name      text NOT NULL,
    category          text NOT NULL,
    brand             text,
    list_price        numeric(12, 2),
    is_inferred       boolean NOT NULL DEFAULT false,
    source_updated_at timestamptz
);
CREATE INDEX IF NOT EXISTS dim_product_category_idx ON warehouse.dim_product (category);

CREATE TABLE IF NOT EXISTS warehouse.dim_location (
    location_key integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    country      text NOT NULL,
    city         text NOT NULL,
    currency     text,
    is_inferred  boolean NOT NULL DEFAULT false,
    CONSTRAINT dim_location_uq UNIQUE (country, city)
);

-- One row per transaction line; revenue of a line = quantity × unit_price.
CREATE TABLE IF NOT EXISTS warehouse.fact_sales (
    event_date     date NOT NULL,                -- the partition (UTC date of event_time)
    date_key       integer NOT NULL,
    transaction_id text NOT NULL,
    line_number    smallint NOT NULL,
    event_id       text NOT NULL,
    event_time     timestamptz NOT NULL,
    user_id        text NOT NULL,
    customer_key   bigint NOT NULL,              -- dim_customer version in effect at event_time
    product_id     text NOT NULL,
    location_key   integer NOT NULL,
    session_id     text NOT NULL,
    category       text NOT NULL,
    payment_method text NOT NULL,
    currency       text NOT NULL,
    quantity       integer NOT NULL,
    unit_price     numeric(12, 2) NOT NULL,
    line_amount    numeric(14, 2) NOT NULL,
    loaded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fact_sales_event_date_idx ON warehouse.fact_sales (event_date);

-- One row per session and event day (a session crossing midnight has a row in each day).
CREATE TABLE IF NOT EXISTS warehouse.fact_sessions (
    event_date       date NOT NULL,
    date_key         integer NOT NULL,
    session_id       text NOT NULL,
    user_id          text NOT NULL,
    customer_key     bigint NOT NULL,
    session_start    timestamptz NOT NULL,
    session_end      timestamptz NOT NULL,
    duration_seconds double precision NOT NULL,
    page_views       integer NOT NULL,
    view_seconds     bigint NOT NULL,
    cart_adds        integer NOT NULL,
    cart_removes     integer NOT NULL,
    cart_updates     integer NOT NULL,
    purchases        integer NOT NULL,
    revenue          numeric(14, 2) NOT NULL,
    converted        boolean NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fact_sessions_event_date_idx ON warehouse.fact_sessions (event_date);
