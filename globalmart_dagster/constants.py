"""Names shared across the code location: groups, key prefixes, topics, owners."""

from __future__ import annotations

from globalmart.contracts import INPUT_TOPICS

RAW_GROUP = "raw"
WAREHOUSE_GROUP = "warehouse"
MARTS_GROUP = "marts"

RAW_PREFIX = "raw"
WAREHOUSE_PREFIX = "warehouse"
MARTS_PREFIX = "marts"

# Schemas in PostgreSQL (same names as the key prefixes).
WAREHOUSE_SCHEMA = "warehouse"
MARTS_SCHEMA = "marts"

RAW_TOPICS: tuple[str, ...] = tuple(INPUT_TOPICS)

OWNERS = ["team:data-platform"]

# Windows of the marts.
RFM_LOOKBACK_DAYS = 365
PRODUCT_WINDOW_DAYS = 30
DAILY_TREND_DAYS = 90
WEEKLY_TREND_WEEKS = 26
MONTHLY_TREND_MONTHS = 24
