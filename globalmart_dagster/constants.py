"""Names shared across the code location: key prefixes, schemas, topics, windows of the marts.
(Groups and owners are set per folder of ``defs/``, in its ``defs.yaml``.)"""

from __future__ import annotations

from globalmart.contracts import INPUT_TOPICS

RAW_PREFIX = "raw"
WAREHOUSE_PREFIX = "warehouse"
MARTS_PREFIX = "marts"

# Schemas in PostgreSQL (same names as the key prefixes).
WAREHOUSE_SCHEMA = "warehouse"
MARTS_SCHEMA = "marts"

RAW_TOPICS: tuple[str, ...] = tuple(INPUT_TOPICS)

# Windows of the marts.
RFM_LOOKBACK_DAYS = 365
PRODUCT_WINDOW_DAYS = 30
DAILY_TREND_DAYS = 90
WEEKLY_TREND_WEEKS = 26
MONTHLY_TREND_MONTHS = 24
