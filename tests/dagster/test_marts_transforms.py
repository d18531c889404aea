"""The marts' pure computations: segment grid coverage, quintiles, ranking, trends."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import product

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalmart.vocabulary import SEGMENTS
from globalmart_dagster.defs.marts.transforms import (
    SEGMENT_BY_CELL,
    product_performance,
    quintile_scores,
    rfm_analysis,
    sales_trends,
    segment_of,
)


def test_every_one_of_the_125_cells_has_exactly_one_known_segment():
    cells = set(product(range(1, 6), repeat=3))
    assert set(SEGMENT_BY_CELL) == cells
    assert all(segment_of(*cell) in SEGMENTS for cell in cells)


def test_all_eight_segments_are_reachable():
    assert set(SEGMENT_BY_CELL.values()) == set(SEGMENTS)
    assert len(SEGMENTS) == 8


@pytest.mark.parametrize(("cell", "segment"), [
    ((5, 5, 5), "Champions"),
    ((1, 1, 1), "Lost"),
    ((1, 5, 5), "Cannot Lose Them"),  # unreachable in the guide's rule order
    ((5, 1, 1), "New Customers"),
    ((2, 3, 3), "At Risk"),
    ((4, 4, 4), "Loyal Customers"),
])
def test_extreme_cells_land_where_the_names_say(cell, segment):
    assert segment_of(*cell) == segment


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.randoms())
def test_quintiles_are_balanced_monotone_and_independent_of_row_order(values, rnd):
    frame = pd.DataFrame({"user_id": [f"u{i:03d}" for i in range(len(values))], "v": values})
    scores = dict(zip(frame["user_id"], quintile_scores(frame, ["v"], [True]), strict=True))
    sizes = pd.Series(list(scores.values())).value_counts()
    assert sizes.max() - sizes.min() <= 1 if len(values) >= 5 else set(sizes) == {1}
    assert set(scores.values()) <= {1, 2, 3, 4, 5}
    by_user = dict(zip(frame["user_id"], frame["v"], strict=True))
    for a, b in product(scores, repeat=2):
        if by_user[a] < by_user[b]:
            assert scores[a] <= scores[b]
    shuffled = frame.sample(frac=1, random_state=rnd.randint(0, 10_000)).reset_index(drop=True)
    again = dict(zip(shuffled["user_id"], quintile_scores(shuffled, ["v"], [True]), strict=True))
    assert again == scores


def test_rfm_scores_recency_frequency_and_monetary():
    day = date(2026, 11, 20)
    customers = pd.DataFrame({
        "user_id": [f"u{i}" for i in range(10)],
        "last_purchase_date": [day - timedelta(days=i) for i in range(10)],
        "frequency": [10 - i for i in range(10)],
        "monetary": [100.0 * (10 - i) for i in range(10)],
    })
    result = rfm_analysis(customers, day).set_index("user_id")
    assert result.loc["u0", "recency"] == 0 and result.loc["u9", "recency"] == 9
    assert tuple(result.loc["u0", ["r_score", "f_score", "m_score"]]) == (5, 5, 5)
    assert tuple(result.loc["u9", ["r_score", "f_score", "m_score"]]) == (1, 1, 1)
    assert result.loc["u0", "rfm_segment"] == "Champions"
    assert result.loc["u9", "rfm_segment"] == "Lost"
    assert set(result["analysis_date"]) == {day}
    assert rfm_analysis(customers.iloc[0:0], day).empty


def test_product_performance_ranks_within_each_category():
    sales = pd.DataFrame({
        "product_id": ["a", "b", "c", "d"],
        "product_name": ["A", "B", "C", "D"],
        "category": ["Books", "Books", "Books", "Yoga"],
        "units_sold": [10, 5, 10, 1],
        "total_revenue": [200.0, 300.0, 100.0, 20.0],
        "orders": [4, 5, 2, 1],
    })
    result = product_performance(sales, date(2026, 11, 20)).set_index("product_id")
    # a: 0.5*200/300 + 0.3*10/10 + 0.2*4/5; b: 0.5 + 0.3*0.5 + 0.2; c: 0.5/3 + 0.3 + 0.2*2/5
    assert result.loc["a", "performance_score"] == pytest.approx(100 * (1 / 3 + 0.3 + 0.16))
    assert result.loc["b", "performance_score"] == pytest.approx(85.0)
    assert result.loc["c", "performance_score"] == pytest.approx(100 * (1 / 6 + 0.3 + 0.08))
    assert list(result.loc[["b", "a", "c", "d"], "rank_in_category"]) == [1, 2, 3, 1]
    assert result.loc["d", "performance_score"] == pytest.approx(100.0)
    assert result.loc["b", "avg_price"] == 60.0


def test_sales_trends_fill_gaps_and_average_over_seven_days():
    end = date(2026, 11, 20)  # a Friday
    days = [end - timedelta(days=n) for n in (9, 8, 7, 5, 4, 3, 2, 1, 0)]  # none on 11-14
    daily = pd.DataFrame({"date": days, "revenue": [10.0 * (i + 1) for i in range(9)],
                          "orders": [1] * 9})
    result = sales_trends(daily, end, daily_days=7, weeks=4, months=3)
    by_day = result[result["trend_type"] == "daily"].set_index("date")
    assert list(by_day.index) == [end - timedelta(days=n) for n in range(6, -1, -1)]
    assert by_day.loc[date(2026, 11, 14), "revenue"] == 0
    # the last 7 days: 11-14 .. 11-20 = 40, 0, 50, 60, 70, 80, 90
    assert by_day.loc[end, "moving_average"] == pytest.approx(390 / 7, abs=0.01)
    assert by_day.loc[end, "growth"] == pytest.approx(90 / 80 - 1)
    assert pd.isna(by_day.loc[date(2026, 11, 15), "growth"])  # after a zero day
    weekly = result[result["trend_type"] == "weekly"].set_index("date")
    assert weekly.loc[date(2026, 11, 16), "revenue"] == 50 + 60 + 70 + 80 + 90
    assert weekly.loc[date(2026, 11, 9), "revenue"] == 10 + 20 + 30 + 40
    monthly = result[result["trend_type"] == "monthly"].set_index("date")
    assert monthly.loc[date(2026, 11, 1), "revenue"] == 450
    assert monthly.loc[date(2026, 11, 1), "average_order_value"] == 50
