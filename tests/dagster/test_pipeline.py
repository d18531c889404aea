"""The whole graph for one day of events: real PostgreSQL, real Spark, real Dagster runs.

Expected figures are computed here from the events themselves."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import psycopg
import pytest

from tests.dagster.conftest import DAY, Built

pytestmark = pytest.mark.slow


def _rows(url: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_daily_job_succeeds_with_every_check_passing(built: Built):
    assert built.result.success
    evaluations = built.result.get_asset_check_evaluations()
    assert len(evaluations) >= 15
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failed == []
