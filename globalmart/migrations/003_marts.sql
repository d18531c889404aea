-- Marts built by Dagster (the seed's field names). One snapshot per analysis_date; readers
-- take the latest.
CREATE SCHEMA IF NOT EXISTS marts;

CREATE TABLE IF NOT EXISTS marts.customer_rfm_analysis (
    analysis_date date NOT NULL,
    user_id       text NOT NULL,
    recency       integer NOT NULL,          -- days since the last purchase
    frequency     integer NOT NULL,          -- transactions
    monetary      numeric(14, 2) NOT NULL,   -- revenue
    r_score       smallint NOT NULL CHECK (r_score BETWEEN 1 AND 5),
    f_score       smallint NOT NULL CHECK (f_score BETWEEN 1 AND 5),
    m_score       smallint NOT NULL CHECK (m_score BETWEEN 1 AND 5),
    rfm_segment   text NOT NULL,
    PRIMARY KEY (analysis_date, user_id)
);

CREATE TABLE IF NOT EXISTS marts.product_performance (
    analysis_date     date NOT NULL,
    product_id        text NOT NULL,
    product_name      text NOT NULL,
    category          text NOT NULL,
    units_sold        bigint NOT NULL,
    total_revenue     numeric(14, 2) NOT NULL,
    avg_price         numeric(14, 2) NOT NULL,
    performance_score double precision NOT NULL,
    rank_in_category  integer NOT NULL,
    PRIMARY KEY (analysis_date, product_id)
);

CREATE TABLE IF NOT EXISTS marts.sales_trends (
    trend_type          text NOT NULL CHECK (trend_type IN ('daily', 'weekly', 'monthly')),
    date                date NOT NULL,               -- first day of the period
    revenue             numeric(14, 2) NOT NULL,
    orders              bigint NOT NULL,
    average_order_value numeric(14, 2) NOT NULL,
    moving_average      numeric(14, 2),              -- 7-day (daily), 4-week, 3-month
    growth              double precision,            -- vs the previous period; NULL for the first
    PRIMARY KEY (trend_type, date)
);
