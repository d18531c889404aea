"""The simulation, without Kafka or PostgreSQL: contracts, totals, determinism, ground truth,
malformed input, resends, stock and the shape of the history."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from pydantic import ValidationError

from generator.catalog import CITIES, COUNTRY_NAMES, Catalog, user_home
from generator.clock import HOURLY, WEEKLY, Params, to_us
from generator.simulate import Simulator
from globalmart.contracts import COUNTRIES, parse_event
from tests.generator.conftest import HISTORY_END, simulate
from tests.generator.rules import expected_anomalies, lines_total, transactions


def by_topic(messages) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for topic, _key, value in messages:
        grouped[topic].append(value)
    return grouped


def test_every_event_is_valid_against_its_contract_and_keyed(catalog: Catalog) -> None:
    run = simulate(catalog, 60_000, anomaly_rate=0.05)
    topics = Counter()
    for topic, key, value in run.messages:
        event = parse_event(topic, value)
        topics[topic] += 1
        expected_key = event.product_id if topic == "inventory_events" else event.user_id
        assert key == expected_key.encode()
    assert set(topics) == {"transactions", "product_views", "cart_events", "inventory_events"}
    assert sum(topics.values()) == 60_000 == run.sim.counts.valid
    assert topics == Counter(run.sim.counts.events)
    # A funnel: far more views than cart events, more cart events than purchases.
    assert topics["product_views"] > 3 * topics["cart_events"] > 3 * topics["transactions"]


def test_event_ids_are_version_7_and_carry_the_event_time(catalog: Catalog) -> None:
    run = simulate(catalog, 5_000)
    events = [parse_event(topic, value) for topic, _key, value in run.messages]
    assert {e.event_id.version for e in events} == {7}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert all(e.event_id.int >> 80 == (e.event_time - epoch) // timedelta(milliseconds=1)
               for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_transactions_are_consistent_and_clean_ones_trip_no_rule(catalog: Catalog) -> None:
    run = simulate(catalog, 80_000, anomaly_rate=0.02)
    txs = transactions(by_topic(run.messages)["transactions"])
    anomalous = {tx for tx, *_ in run.records.anomalies}
    clean = [tx for tx in txs if tx["transaction_id"] not in anomalous]
    assert len(clean) > 1_000
    for tx in clean:
        assert Decimal(str(tx["total_amount"])) == lines_total(tx)
        assert Decimal(str(tx["total_amount"])) <= 5000
        assert 1 <= len(tx["items"]) <= 5
        assert all(1 <= line["quantity"] <= 3 for line in tx["items"])
        assert len({line["product_id"] for line in tx["items"]}) == len(tx["items"])
        assert tx["currency"] == COUNTRIES[tx["country"]][0]
        assert tx["city"] in COUNTRIES[tx["country"]][1]
    for tx in txs:
        for line in tx["items"]:
            index = int(line["product_id"][1:])
            assert Decimal(str(line["unit_price"])) * 100 == catalog.price_cents[index]


def test_a_seed_gives_the_same_events_byte_for_byte(catalog: Catalog) -> None:
    options = {"anomaly_rate": 0.05, "malformed_rate": 0.01, "resend_rate": 0.01, "seed": 7}
    first = simulate(catalog, 20_000, **options)
    second = simulate(catalog, 20_000, **options)
    assert first.messages == second.messages
    assert first.records == second.records
    other = simulate(catalog, 20_000, **{**options, "seed": 8})
    assert other.messages != first.messages


def test_ground_truth_is_exactly_what_the_rules_find(catalog: Catalog) -> None:
    # Few users and many anomalies: the rapid-fire guard and every rule get exercised.
    run = simulate(catalog, 150_000, users=300, anomaly_rate=0.2, resend_rate=0.02,
                   malformed_rate=0.02)
    valid_tx = [v for t, _, v in run.messages if t == "transactions" and _is_valid(t, v)]
    expected = expected_anomalies(transactions(valid_tx))
    recorded = [(tx, kind) for tx, kind, *_ in run.records.anomalies]
    assert len(recorded) == len(set(recorded))  # one row per (transaction, rule)
    assert set(recorded) == expected
    kinds = Counter(kind for _, kind in recorded)
    assert set(kinds) == {"high_value", "unusual_quantity", "rapid_fire", "total_mismatch"}
    assert run.sim.counts.dropped_purchases > 0  # the guard did hold shoppers back
    # Injected anomalies trip their own rule: transactions with two rules are rare.
    per_tx = Counter(tx for tx, _ in recorded)
    assert sum(1 for n in per_tx.values() if n > 1) <= 0.05 * len(per_tx)
    # The ground-truth rows carry the event's user and time.
    by_id = {tx["transaction_id"]: tx for tx in transactions(valid_tx)}
    for tx_id, _kind, user, t_us, detail in run.records.anomalies:
        assert by_id[tx_id]["user_id"] == user
        assert datetime.fromisoformat(by_id[tx_id]["event_time"]) == _from_us(t_us)
        assert detail


def test_anomaly_rate_is_honoured(catalog: Catalog) -> None:
    run = simulate(catalog, 200_000, anomaly_rate=0.05)
    purchases = run.sim.counts.events["transactions"]
    injected = run.sim.counts.injected
    # Bursts add transactions of their own; about 5 % of the others are injected anomalies.
    assert 0.03 * purchases < injected < 0.07 * purchases
    assert 0.8 * injected < len({tx for tx, *_ in run.records.anomalies}) <= 1.6 * injected


def _is_valid(topic: str, value: bytes) -> bool:
    try:
        parse_event(topic, value)
    except (ValidationError, ValueError):
        return False
    return True


def _from_us(t_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_us)


def test_malformed_messages_are_invalid_mixed_and_at_the_rate(catalog: Catalog) -> None:
    run = simulate(catalog, 50_000, malformed_rate=0.04)
    invalid = [(t, v) for t, _, v in run.messages if not _is_valid(t, v)]
    assert len(invalid) == run.sim.counts.malformed
    assert len(run.messages) == 50_000 + run.sim.counts.malformed
    assert 0.03 * 50_000 < len(invalid) < 0.05 * 50_000
    kinds = Counter()
    for topic, value in invalid:
        try:
            parse_event(topic, value)
        except ValidationError as exc:
            kinds[exc.errors()[0]["type"]] += 1
    assert kinds["json_invalid"] > 0  # bad JSON
    assert kinds["missing"] > 0  # a field is missing
    wrong_type = sum(kinds[k] for k in ("decimal_parsing", "int_parsing", "datetime_parsing",
                                        "datetime_from_date_parsing"))
    assert wrong_type > 0
    negative = kinds["greater_than_equal"] + kinds["greater_than"] + kinds["value_error"]
    assert negative > 0
    assert {"transactions", "product_views", "cart_events"} <= {t for t, _ in invalid}


def test_resends_are_exact_copies_at_the_rate(catalog: Catalog) -> None:
    run = simulate(catalog, 50_000, resend_rate=0.03)
    counts = Counter(run.messages)
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates == run.sim.counts.resends
    assert 0.02 * 50_000 < duplicates < 0.04 * 50_000
    assert len(run.messages) == 50_000 + duplicates
    ids = Counter(json.loads(v)["event_id"] for _, _, v in run.messages)
    assert sum(n - 1 for n in ids.values()) == duplicates  # same bytes, same event_id


def test_stock_never_goes_negative_and_low_stock_is_restocked() -> None:
    catalog = Catalog(1_000)  # 10 products a category: the popular ones run low quickly
    run = simulate(catalog, 300_000)
    stock: dict[str, int] = {}
    restocked = 0
    for topic, _key, value in run.messages:
        event = json.loads(value)
        if topic == "transactions":
            for line in event["items"]:
                pid = line["product_id"]
                have = stock.get(pid, catalog.initial_stock[int(pid[1:])])
                stock[pid] = have - line["quantity"]
                assert stock[pid] >= 0, pid
        elif topic == "inventory_events":
            pid = event["product_id"]
            have = stock.get(pid, catalog.initial_stock[int(pid[1:])])
            stock[pid] = have + event["quantity_delta"]
            assert stock[pid] >= 0, pid
            restocked += event["kind"] == "restock"
    assert restocked > 0


def test_users_live_where_their_id_says_and_moves_are_recorded(catalog: Catalog) -> None:
    run = simulate(catalog, 300_000)
    moved = {user: city for user, city, _ in run.records.customer_moves}
    assert moved  # about one session in 2,000 follows a move
    for topic, _key, value in run.messages:
        if topic != "transactions":
            continue
        event = json.loads(value)
        user = int(event["user_id"][1:])
        country, city = user_home(user)
        assert event["country"] == COUNTRY_NAMES[country]
        if user not in moved:
            assert event["city"] == CITIES[country][city]


def test_source_records_cover_exactly_who_and_what_appears(catalog: Catalog) -> None:
    run = simulate(catalog, 30_000)
    users, products = set(), set()
    for topic, _key, value in run.messages:
        event = json.loads(value)
        if "user_id" in event:
            users.add(int(event["user_id"][1:]))
        if topic == "transactions":
            products.update(int(line["product_id"][1:]) for line in event["items"])
        elif "product_id" in event:
            products.add(int(event["product_id"][1:]))
    assert sorted(run.records.new_customers) == sorted(users)
    assert sorted(run.records.new_products) == sorted(products)


def test_history_has_the_daily_and_weekly_shape(catalog: Catalog) -> None:
    run = simulate(catalog, 10**9, history_days=14, history_rate=0.4, duration=0)
    times = [datetime.fromisoformat(json.loads(v)["event_time"]) for _, _, v in run.messages]
    first_day = (HISTORY_END - timedelta(days=14)).replace(hour=0, minute=0)
    assert min(times) >= first_day
    assert max(times) < HISTORY_END
    assert len({t.date() for t in times}) == 15  # 14 full days and today so far
    full = [t for t in times if t < HISTORY_END.replace(hour=0, minute=0)]
    hours = Counter(t.hour for t in full)
    busiest = max(range(24), key=HOURLY.__getitem__)
    quietest = min(range(24), key=HOURLY.__getitem__)
    assert hours[busiest] > 4 * hours[quietest]
    weekdays = Counter(t.weekday() for t in full)  # every weekday twice
    assert weekdays[WEEKLY.index(max(WEEKLY))] > 1.1 * weekdays[WEEKLY.index(min(WEEKLY))]
    # The volume follows the configured mean: 0.4 events/s over 14 days, within 10 %.
    assert abs(len(full) - 0.4 * 14 * 86_400) < 0.1 * 0.4 * 14 * 86_400


def test_live_rate_is_the_configured_rate(catalog: Catalog) -> None:
    start = to_us(HISTORY_END)
    sim = Simulator(catalog, 10_000_000, Params(start_us=start, history_end_us=start,
                                                rate=2_000.0), seed=3)
    events = []
    while sim.clock < start + 60_000_000:
        end, messages = sim.step()
        assert end - start <= 60_000_000 or messages == []
        events += messages
    assert 0.9 * 120_000 < len(events) < 1.1 * 120_000
    for topic, values in by_topic(events).items():  # each topic in event-time order
        times = [json.loads(v)["event_time"] for v in values]
        assert times == sorted(times), topic


def test_going_live_after_the_history_keeps_the_live_rate(catalog: Catalog) -> None:
    end = to_us(HISTORY_END)
    sim = Simulator(catalog, 10_000_000, Params(start_us=end - 3_600_000_000, history_end_us=end,
                                                rate=2_000.0, history_rate=5.0), seed=4)
    live = []
    while sim.clock < end + 30_000_000:
        _, messages = sim.step()
        live += [m for m in messages
                 if datetime.fromisoformat(json.loads(m[2])["event_time"]) >= HISTORY_END]
    assert 0.85 * 60_000 < len(live) < 1.15 * 60_000


@pytest.mark.parametrize("users", [1, 5])
def test_tiny_worlds_still_work(catalog: Catalog, users: int) -> None:
    run = simulate(catalog, 5_000, users=users, anomaly_rate=0.3)
    for topic, _key, value in run.messages:
        parse_event(topic, value)
    valid_tx = [v for t, _, v in run.messages if t == "transactions"]
    expected = expected_anomalies(transactions(valid_tx))
    assert {(tx, kind) for tx, kind, *_ in run.records.anomalies} == expected


def test_user_ids_of_any_width_are_formatted_alike() -> None:
    from generator.encoding import people

    session_ids = np.frombuffer(b"0123456789abcdef0123456789abcdef0123" * 2,
                                dtype=np.uint8).reshape(2, 36)
    small = people(np.array([7, 99_999_999]), session_ids)
    large = people(np.array([7, 123_456_789]), session_ids)
    sid = "0123456789abcdef0123456789abcdef0123"
    assert small == ([f'"user_id":"U00000007","session_id":"{sid}"',
                      f'"user_id":"U99999999","session_id":"{sid}"'],
                     [b"U00000007", b"U99999999"])
    assert large == ([f'"user_id":"U00000007","session_id":"{sid}"',
                      f'"user_id":"U123456789","session_id":"{sid}"'],
                     [b"U00000007", b"U123456789"])
