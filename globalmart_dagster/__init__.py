"""GlobalMart's Dagster code location: warehouse and marts as partitioned assets, with checks,
freshness and the sensor that builds complete days (see docs/dagster.md)."""
