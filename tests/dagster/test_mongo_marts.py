"""The MongoDB mart writer on its own, against the session's real wire-protocol server
(SecantusDB, or ``GLOBALMART_TEST_MONGODB_URL``): what a replacement replaces, and what comes
back for the types BSON stores differently from pandas (dates, aware datetimes, money)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pandas as pd
import pymongo
from bson.decimal128 import Decimal128
from pymongo.collection import Collection

from globalmart_dagster.resources import MongoMartIOManager

MONDAY, TUESDAY = date(2026, 11, 16), date(2026, 11, 17)


def snapshot(day: date, users: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"analysis_date": [day] * len(users), "user_id": list(users),
                         "frequency": list(users.values())})


def stored(marts: MongoMartIOManager, name: str) -> list[tuple]:
    frame = marts.read(name)
    return sorted(zip(frame["analysis_date"], frame["user_id"], frame["frequency"], strict=True))


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_rewriting_a_day_replaces_its_snapshot_and_keeps_the_others(
        mongo_marts: MongoMartIOManager):
    mongo_marts.replace("rfm", snapshot(MONDAY, {"u1": 1, "u2": 2}), "analysis_date", [MONDAY])
    mongo_marts.replace("rfm", snapshot(TUESDAY, {"u1": 3, "u2": 4}), "analysis_date", [TUESDAY])

    mongo_marts.replace("rfm", snapshot(TUESDAY, {"u3": 5}), "analysis_date", [TUESDAY])

    assert stored(mongo_marts, "rfm") == [(midnight(MONDAY), "u1", 1), (midnight(MONDAY), "u2", 2),
                                          (midnight(TUESDAY), "u3", 5)]
    tuesday = mongo_marts.read("rfm", "analysis_date", [TUESDAY])
    assert list(tuesday["user_id"]) == ["u3"]


def test_an_empty_day_removes_its_snapshot(mongo_marts: MongoMartIOManager):
    mongo_marts.replace("rfm", snapshot(MONDAY, {"u1": 1}), "analysis_date", [MONDAY])
    mongo_marts.replace("rfm", snapshot(TUESDAY, {"u1": 2}), "analysis_date", [TUESDAY])

    mongo_marts.replace("rfm", snapshot(TUESDAY, {}), "analysis_date", [TUESDAY])

    assert stored(mongo_marts, "rfm") == [(midnight(MONDAY), "u1", 1)]


def test_without_replace_by_the_whole_mart_is_replaced(mongo_marts: MongoMartIOManager):
    mongo_marts.replace("rfm", snapshot(MONDAY, {"u1": 1}), None, [])
    mongo_marts.replace("rfm", snapshot(TUESDAY, {"u2": 2}), None, [])

    assert stored(mongo_marts, "rfm") == [(midnight(TUESDAY), "u2", 2)]


def test_datetimes_come_back_aware_in_utc(mongo_marts: MongoMartIOManager):
    paris = timezone(timedelta(hours=1))
    written = datetime(2026, 11, 20, 23, 30, 15, 123000, tzinfo=paris)
    frame = pd.DataFrame({"key": ["a"], "loaded_at": [written], "day": [TUESDAY]})

    mongo_marts.replace("times", frame, None, [])

    (document,) = mongo_marts.read("times").to_dict(orient="records")
    assert document["loaded_at"] == datetime(2026, 11, 20, 22, 30, 15, 123000, tzinfo=UTC)
    assert document["loaded_at"].utcoffset() == timedelta(0)
    assert document["day"] == midnight(TUESDAY) and document["day"].utcoffset() == timedelta(0)
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongo_marts.mongodb_url) as client:  # BSON dates, not strings
        raw = client[mongo_marts.database]["times"].find_one({}, {"_id": 0})
    assert raw is not None and isinstance(raw["loaded_at"], datetime)
    assert raw["loaded_at"] == datetime(2026, 11, 20, 22, 30, 15, 123000)  # naive = UTC


def test_money_is_decimal128_exact_to_the_cent(mongo_marts: MongoMartIOManager):
    cents = [Decimal("0.10"), Decimal("0.20"), Decimal("1234567890.99"), Decimal("-0.01")]
    frame = pd.DataFrame({"key": ["a", "b", "c", "d"], "revenue": cents})

    mongo_marts.replace("money", frame, None, [])

    back = mongo_marts.read("money").sort_values("key")
    assert list(back["revenue"]) == cents
    assert all(type(v) is Decimal for v in back["revenue"])
    assert sum(back["revenue"]) == Decimal("1234567891.28")  # 0.1 + 0.2 is not 0.3 in floats
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongo_marts.mongodb_url) as client:  # stored as Decimal128
        money: Collection[dict[str, Any]] = client[mongo_marts.database]["money"]
        raw = money.find_one({"key": "a"})
        (total,) = money.aggregate([{"$group": {"_id": None, "total": {"$sum": "$revenue"}}}])
    assert raw is not None and raw["revenue"] == Decimal128("0.10")
    assert total["total"] == Decimal128("1234567891.28")  # the server adds them exactly too
