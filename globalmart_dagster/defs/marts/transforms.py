"""Pure computations of the marts (pandas in, pandas out; no I/O).

RFM segmentation is table-driven: :data:`SEGMENT_GRID` maps recency score × combined
frequency-monetary score to a segment, and :data:`SEGMENT_BY_CELL` expands it to all 125
(r, f, m) cells. That grid is the one place the segment rules live.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from globalmart.vocabulary import SEGMENTS

_CH, _LC, _PL, _NC, _AR, _CL, _HB, _LO = SEGMENTS

# Rows: r_score 5 (bought most recently) .. 1; columns: fm_score 1 .. 5 (see fm_score()).
SEGMENT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: (_NC, _PL, _PL, _CH, _CH),
    4: (_NC, _PL, _LC, _LC, _CH),
    3: (_HB, _PL, _LC, _LC, _LC),
    2: (_HB, _HB, _AR, _AR, _CL),
    1: (_LO, _LO, _AR, _CL, _CL),
}


def fm_score(f: int, m: int) -> int:
    """Frequency and monetary scores combined: their mean, halves rounded up (1..5)."""
    return (f + m + 1) // 2


SEGMENT_BY_CELL: dict[tuple[int, int, int], str] = {
    (r, f, m): SEGMENT_GRID[r][fm_score(f, m) - 1]
    for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)
}


def segment_of(r: int, f: int, m: int) -> str:
    """The segment of one (r, f, m) cell (scores 1..5)."""
    return SEGMENT_BY_CELL[(r, f, m)]


def quintile_scores(order: pd.DataFrame, by: list[str], ascending: list[bool]) -> np.ndarray:
    """Scores 1..5 by position in a total order (``by`` then ``user_id``): the worst fifth gets
    1, the best fifth 5. Sizes of the five groups differ by at most one, and equal values are
    split deterministically by the remaining keys and finally by ``user_id``."""
    n = len(order)
    if n == 0:
        return np.array([], dtype="int16")
    ranked = order.sort_values([*by, "user_id"], ascending=[*ascending, True], kind="mergesort")
    scores = np.empty(n, dtype="int16")
    positions = np.arange(n)
    scores[order.index.get_indexer(ranked.index)] = (positions * 5 // n + 1).astype("int16")
    return scores


def rfm_analysis(customers: pd.DataFrame, analysis_date: date) -> pd.DataFrame:
    """RFM scores and segments.

    ``customers``: user_id, last_purchase_date, frequency (transactions), monetary (revenue).
    Recency is days from the last purchase to ``analysis_date``. r: fewer days is better
    (ties: higher frequency, then higher monetary, then user_id); f: more transactions is
    better (ties: monetary); m: more revenue is better (ties: frequency)."""
    columns = ["analysis_date", "user_id", "recency", "frequency", "monetary",
               "r_score", "f_score", "m_score", "rfm_segment"]
    if customers.empty:
        return pd.DataFrame(columns=columns)
    frame = customers.reset_index(drop=True).copy()
    frame["recency"] = [(analysis_date - d).days for d in frame["last_purchase_date"]]
    frame["frequency"] = frame["frequency"].astype("int64")
    monetary = frame["monetary"].astype(float)
    keys = pd.DataFrame({"user_id": frame["user_id"], "recency": frame["recency"],
                         "frequency": frame["frequency"], "monetary": monetary})
    # Ascending order = worst first.
    frame["r_score"] = quintile_scores(keys, ["recency", "frequency", "monetary"],
                                       [False, True, True])
    frame["f_score"] = quintile_scores(keys, ["frequency", "monetary"], [True, True])
    frame["m_score"] = quintile_scores(keys, ["monetary", "frequency"], [True, True])
    frame["rfm_segment"] = [
        segment_of(r, f, m) for r, f, m in zip(frame["r_score"], frame["f_score"],
                                               frame["m_score"], strict=True)
    ]
    frame["analysis_date"] = analysis_date
    return frame[columns].sort_values("user_id", kind="mergesort").reset_index(drop=True)


# Weights of the performance score (share of the category's best product on each measure).
PERFORMANCE_WEIGHTS = {"total_revenue": 0.5, "units_sold": 0.3, "orders": 0.2}


def product_performance(sales: pd.DataFrame, analysis_date: date) -> pd.DataFrame:
    """Per-product performance over a window.

    ``sales``: product_id, product_name, category, units_sold, total_revenue, orders.
    ``avg_price`` = revenue / units. ``performance_score`` (0..100) weighs the product's revenue,
    units and orders relative to the best product of its category on each
    (:data:`PERFORMANCE_WEIGHTS`). ``rank_in_category``: 1 = best score (ties: higher revenue,
    then product_id)."""
    columns = ["analysis_date", "product_id", "product_name", "category", "units_sold",
               "total_revenue", "avg_price", "performance_score", "rank_in_category"]
    if sales.empty:
        return pd.DataFrame(columns=columns)
    frame = sales.reset_index(drop=True).copy()
    revenue = frame["total_revenue"].astype(float)
    frame["avg_price"] = (revenue / frame["units_sold"].astype(float)).round(2)
    score = np.zeros(len(frame))
    for column, weight in PERFORMANCE_WEIGHTS.items():
        values = frame[column].astype(float)
        best = values.groupby(frame["category"]).transform("max")
        score += weight * np.where(best > 0, values / best.where(best > 0, 1.0), 0.0)
    frame["performance_score"] = np.round(100 * score, 4)
    ordered = frame.assign(_revenue=revenue).sort_values(
        ["category", "performance_score", "_revenue", "product_id"],
        ascending=[True, False, False, True], kind="mergesort",
    )
    ordered["rank_in_category"] = ordered.groupby("category").cumcount() + 1
    ordered["analysis_date"] = analysis_date
    return ordered[columns].sort_values(["category", "rank_in_category"]).reset_index(drop=True)


def _growth(values: pd.Series) -> pd.Series:
    previous = values.shift(1)
    growth = (values - previous) / previous
    return growth.where(previous > 0)


def _period_rows(trend_type: str, periods: pd.DataFrame, window: int) -> pd.DataFrame:
    revenue = periods["revenue"].astype(float)
    frame = pd.DataFrame({
        "trend_type": trend_type,
        "date": periods["date"],
        "revenue": revenue.round(2),
        "orders": periods["orders"].astype("int64"),
        "average_order_value": np.where(periods["orders"] > 0,
                                        revenue / periods["orders"].where(periods["orders"] > 0, 1),
                                        0.0).round(2),
        "moving_average": revenue.rolling(window, min_periods=1).mean().round(2),
        "growth": _growth(revenue),
    })
    return frame


def sales_trends(daily: pd.DataFrame, end: date, daily_days: int, weeks: int,
                 months: int) -> pd.DataFrame:
    """Daily, weekly and monthly revenue, orders and average order value, with a moving
    average (7 days, 4 weeks, 3 months) and growth over the previous period.

    ``daily``: date, revenue, orders for the days that had sales, up to ``end``. Days without
    sales count as zero between the first sales day and ``end``. Daily rows cover the last
    ``daily_days`` days (moving averages use the days before them too); weekly rows are ISO
    weeks (``date`` = Monday) and monthly rows calendar months (``date`` = the 1st), the last of
    each possibly partial."""
    columns = ["trend_type", "date", "revenue", "orders", "average_order_value",
               "moving_average", "growth"]
    daily = daily[pd.to_datetime(daily["date"]) <= pd.Timestamp(end)]
    if daily.empty:
        return pd.DataFrame(columns=columns)
    index = pd.date_range(pd.to_datetime(daily["date"]).min(), pd.Timestamp(end), freq="D")
    series = (daily.assign(date=pd.to_datetime(daily["date"]),
                           revenue=daily["revenue"].astype(float))
              .set_index("date")[["revenue", "orders"]]
              .reindex(index, fill_value=0))
    series["orders"] = series["orders"].astype("int64")

    day_rows = _period_rows("daily", series.rename_axis("date").reset_index(), 7)
    day_rows = day_rows[day_rows["date"] > pd.Timestamp(end - timedelta(days=daily_days))]

    week_start = series.index - pd.to_timedelta(series.index.day_of_week, unit="D")
    weekly = series.groupby(week_start).sum().rename_axis("date").reset_index()
    week_rows = _period_rows("weekly", weekly, 4).tail(weeks)

    month_start = series.index.to_period("M").to_timestamp()
    monthly = series.groupby(month_start).sum().rename_axis("date").reset_index()
    month_rows = _period_rows("monthly", monthly, 3).tail(months)

    result = pd.concat([day_rows, week_rows, month_rows], ignore_index=True)
    result["date"] = pd.to_datetime(result["date"]).dt.date
    return result[columns].reset_index(drop=True)
