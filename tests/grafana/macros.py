"""Grafana's PostgreSQL macros, expanded the way Grafana expands them before it sends a query."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(text: str) -> int:
    """'30s', '1m', '5m', '1h' → seconds."""
    match = re.fullmatch(r"\s*'?(\d+)([smhd])'?\s*", text)
    if not match:
        raise ValueError(f"unsupported interval {text!r}")
    return int(match[1]) * _UNITS[match[2]]


def expand(sql: str, start: datetime, end: datetime, interval: str = "1m") -> str:
    """Replace $__timeFilter, $__timeGroupAlias, $__timeGroup, $__timeFrom, $__timeTo and
    $__interval; refuse any macro left over."""
    sql = sql.replace("$__interval_ms", str(interval_seconds(interval) * 1000))
    sql = sql.replace("$__interval", interval)

    def group(match: re.Match, alias: bool) -> str:
        seconds = interval_seconds(match[2])
        expr = f"floor(extract(epoch from {match[1].strip()})/{seconds})*{seconds}"
        return f'{expr} AS "time"' if alias else expr

    sql = re.sub(r"\$__timeGroupAlias\(([^,()]+),([^()]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,()]+),([^()]+)\)", lambda m: group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^()]+)\)",
                 lambda m: f"{m[1].strip()} BETWEEN '{start.isoformat()}' AND "
                           f"'{end.isoformat()}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{start.isoformat()}'")
    sql = sql.replace("$__timeTo()", f"'{end.isoformat()}'")
    if "$__" in sql or "$" in re.sub(r"'[^']*'", "", sql):
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql
