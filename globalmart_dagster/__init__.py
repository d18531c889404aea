"""GlobalMart's Dagster code location: warehouse and marts as partitioned assets, with checks,
freshness, the Kafka sensor and schedules (see docs/dagster.md)."""
