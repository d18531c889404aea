"""The simulation: shoppers' sessions through a funnel, purchases, restocks and injected anomalies.

Pure: no I/O, no wall clock. A :class:`Simulator` advances a simulated clock (integer
microseconds since the epoch) window by window; each :meth:`Simulator.step` returns the Kafka
messages (topic, key, JSON bytes) of the events whose time falls in the window, each topic's in
time order, and accumulates the records the source tables need (new customers and products,
customer moves, the ground truth of anomalies). The same seed gives the same messages, byte for
byte.

How it works: sessions start at a rate that follows the target events/s (shaped by hour of day
and day of week in the history). Sessions are drawn in batches with numpy (user, device,
interest, views with their products and durations, cart decisions), and schedule all their
events at once: product views (80 % of the traffic) in time-sorted numpy chunks, everything
else (cart adds/updates/removes, purchases, later restocks) in a calendar of 100 ms buckets.
Emitting a window takes the views due and pops its buckets; views become JSON in bulk, the rest
one by one in event-time order, because that is where order matters: stock (a line never sells
more than is in stock; low stock schedules a restock), the rapid-fire guard, and the anomaly
ground truth.

The ground truth is computed by applying the streaming rules to every transaction emitted
(:data:`globalmart.vocabulary.ANOMALY_RULES`), so it matches them exactly; clean transactions
are built never to trip a rule (quantities ≤ 3, totals ≤ 5,000, never a 5th purchase by a
user within 60 s), and each injected anomaly is built to trip its own rule only.

This module holds the sessions and the calendar; the rest has a module each:
:mod:`generator.clock` (parameters, simulated time, rates and windows),
:mod:`generator.purchases` (lines of clean and injected purchases, the ground truth),
:mod:`generator.stock` (stock levels, restocks, adjustments), :mod:`generator.encoding` (JSON
and ids, vectorised) and :mod:`generator.malformed` (broken variants for the stream to reject).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from math import gcd
from operator import itemgetter
from random import Random

import numpy as np

from generator.catalog import CITIES, Catalog, cumulative, pick, user_homes
from generator.clock import BUCKET_US, Params, Timeline, iso_time, traffic_shape
from generator.encoding import (
    CART_EVENTS,
    INVENTORY_EVENTS,
    LINE_JSON,
    PRODUCT_VIEWS,
    STOCK_JSON,
    TIME_AT,
    TOPICS,
    TRANSACTIONS,
    TX_JSON,
    Message,
    Session,
    event_heads,
    money,
    people,
    uuid4_str,
    uuid_text,
)
from generator.malformed import malformed
from generator.purchases import (
    BURST,
    CLEAN,
    HIGH_VALUE,
    INJECTED,
    MAX_CLEAN_QUANTITY,
    MAX_LINES,
    RAPID_FIRE_WINDOW_US,
    TOTAL_MISMATCH,
    UNUSUAL_QUANTITY,
    clean_lines,
    ground_truth,
    high_value_lines,
    unusual_quantity_lines,
)
from generator.stock import Stock
from globalmart.vocabulary import ANOMALY_RULES, RAPID_FIRE_COUNT

WARMUP_EVENTS = 2_000_000  # sessions already running when the clock starts (up to 10 min)
MAX_WARMUP_US = 600_000_000
_MAX_VIEW_CHUNKS = 64  # merge the scheduled-view chunks beyond this many
_SESSION_TAIL_US = 300_000_000  # a session's last event is at most this long after its views

# The funnel.
P_VIEW_MORE = 0.7  # after a view, another view (views per session: 1 + geometric)
MAX_VIEWS = 15
P_IN_CATEGORY = 0.8  # a view stays in the session's category of interest
P_ADD = 0.15  # a viewed product goes into the cart
P_UPDATE = 0.1  # ... and its quantity is then changed
P_REMOVE = 0.25  # a session with a cart removes one product
P_BUY = 0.45  # a session with a cart buys it (else: abandonment)
P_MOVE = 0.0005  # a session's user has just moved to another city
_DEVICE_CUM = cumulative([55, 35, 10])
PAYMENT_METHODS = ("credit_card", "paypal", "debit_card", "apple_pay", "google_pay")
_PAYMENT_CUM = cumulative([40, 20, 20, 12, 8])
_QUANTITY_CUM = cumulative([70, 22, 8])  # 1, 2 or 3 units per cart add
EVENTS_PER_SESSION_GUESS = 4.2  # until the simulation has measured its own

# Kinds of calendar entries
CART, PURCHASE, STOCK, MOVE = range(4)  # kinds of calendar entries (views live apart)

_DEVICE_CUM_NP = np.array(_DEVICE_CUM)
_QUANTITY_CUM_NP = np.array(_QUANTITY_CUM)


@dataclass
class Records:
    """What the source tables need, accumulated since the last :meth:`Simulator.drain`."""

    new_customers: list[int] = field(default_factory=list)  # user indices, first appearance
    customer_moves: list[tuple[int, int, int]] = field(default_factory=list)  # user, city, t_us
    new_products: list[int] = field(default_factory=list)  # product indices, first appearance
    anomalies: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    # (transaction_id, anomaly_type, user_id, event_time_us, detail)

    def __len__(self) -> int:
        return (len(self.new_customers) + len(self.customer_moves) + len(self.new_products)
                + len(self.anomalies))


@dataclass
class Counts:
    """Running totals of what was emitted."""

    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPICS, 0))
    malformed: int = 0
    resends: int = 0
    anomalies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANOMALY_RULES, 0))
    injected: int = 0  # purchases turned into an anomaly (a burst counts once)
    dropped_purchases: int = 0  # clean purchases the rapid-fire guard or the stock cancelled

    @property
    def valid(self) -> int:
        return sum(self.events.values())


class _Views:
    """Scheduled product views, sorted by time: parallel arrays (time, user, product,
    duration, session) and how many were already emitted."""

    __slots__ = ("done", "duration", "product", "session", "t", "user")

    def __init__(self, t: np.ndarray, user: np.ndarray, product: np.ndarray,
                 duration: np.ndarray, session: np.ndarray) -> None:
        self.t, self.user, self.product = t, user, product
        self.duration, self.session = duration, session
        self.done = 0

    def part(self, lo: int, hi: int) -> _Views:
        return _Views(self.t[lo:hi], self.user[lo:hi], self.product[lo:hi],
                      self.duration[lo:hi], self.session[lo:hi])

    @classmethod
    def merge(cls, parts: list[_Views]) -> _Views:
        """One chunk, sorted by time (stable: ties keep the parts' order)."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return cls(empty, empty, empty, empty, np.empty(0, dtype=object))
        t = np.concatenate([p.t for p in parts])
        order = np.argsort(t, kind="stable")
        return cls(t[order], *(np.concatenate([getattr(p, name) for p in parts])[order]
                               for name in ("user", "product", "duration", "session")))

    def head(self, n: int) -> _Views:
        return self.part(0, n)


def _first_seen(seen: np.ndarray, ids: np.ndarray) -> list[int]:
    """The ids not seen before (marking them seen), in order of first appearance."""
    fresh = ids[seen[ids] == 0]
    if not len(fresh):
        return []
    unique, first = np.unique(fresh, return_index=True)
    seen[unique] = 1
    return unique[np.argsort(first)].tolist()


def _first_events(views: _Views, pending: list[tuple], budget: int) -> tuple[_Views, list]:
    """At most ``budget`` events, the earliest (views first among equal times)."""
    if len(views.t) + len(pending) <= budget:
        return views, pending
    if budget <= 0:
        return views.head(0), []
    times = np.concatenate([views.t, np.fromiter(map(itemgetter(0), pending), dtype=np.int64,
                                                 count=len(pending))])
    kinds = np.concatenate([np.zeros(len(views.t), dtype=np.int8),
                            np.ones(len(pending), dtype=np.int8)])
    chosen = np.lexsort((kinds, times))[:budget]
    n_views = int(np.count_nonzero(chosen < len(views.t)))
    return views.head(n_views), pending[:budget - n_views]


class Simulator:
    """The world in motion. Call :meth:`step` repeatedly; each call covers one window."""

    def __init__(self, catalog: Catalog, users: int, params: Params, seed: int) -> None:
        if users < 1:
            raise ValueError("need at least one user")
        if params.history_end_us < params.start_us:
            raise ValueError("the history cannot end before it starts")
        self.catalog = catalog
        self.users = users
        self.params = params
        self.counts = Counts()
        self.records = Records()
        self.clock = params.start_us - params.start_us % BUCKET_US
        self.timeline = Timeline(params)
        self._rng = Random(seed)
        self._np = np.random.Generator(np.random.PCG64(seed))
        self._buckets: defaultdict[int, list[tuple]] = defaultdict(list)
        self._carry = 0.0
        self._sessions = 0
        self._scheduled = 0
        self._window_end = self.clock
        self._floor = self.clock  # nothing happens before the clock starts
        self._user_seen = bytearray(users)
        self._product_seen = bytearray(catalog.size)
        self._user_flags = np.frombuffer(self._user_seen, dtype=np.uint8)  # same memory
        self._product_flags = np.frombuffer(self._product_seen, dtype=np.uint8)
        self._views: list[_Views] = []  # scheduled product views, in chunks sorted by time
        self._moved: dict[int, int] = {}
        self.stock = Stock(catalog)
        self._recent: dict[int, deque[int]] = {}  # user -> times of their recent purchases
        self._next_sweep = self.clock + RAPID_FIRE_WINDOW_US
        self._resend_queue: list[Message] = []
        # Heavy and light shoppers: half the sessions come from a skewed draw, mapped onto
        # user ids by a bijection so that the heavy users are spread over the id space.
        spread = 2_654_435_761
        while gcd(spread, users) != 1:
            spread += 2
        self._spread = spread % users
        self._warm_up()

    # ---------------------------------------------------------------- clock and rates
    @property
    def in_history(self) -> bool:
        """Whether the clock is still in the history."""
        return self.clock < self.timeline.history_end

    def _events_per_session(self) -> float:
        if self._sessions < 500:
            return EVENTS_PER_SESSION_GUESS
        return self._scheduled / self._sessions

    def _start_sessions(self, start: int, length: int, rate: float) -> None:
        expected = rate * length / 1e6 / self._events_per_session() + self._carry
        n = int(expected)
        self._carry = expected - n
        if n:
            self._sessions_batch(n, start, length)

    def _warm_up(self, rate: float | None = None) -> None:
        """Start the sessions that would already be running now (at ``rate`` events/s; by
        default the current rate), scheduling only what they still have to do."""
        self._floor = self.clock
        rate = self.timeline.rate_at(self.clock) if rate is None else rate
        if rate <= 0:
            return
        length = min(MAX_WARMUP_US, int(WARMUP_EVENTS / rate * 1e6))
        length -= length % BUCKET_US
        if length <= 0:
            return
        self._start_sessions(self.clock - length, length, rate)

    # ---------------------------------------------------------------- the public step
    def step(self, limit: int | None = None) -> tuple[int, list[Message]]:
        """Advance one window; return its end (µs) and its messages, each topic's in
        event-time order (resends of the previous window first).

        ``limit`` stops emitting once that many valid events have been emitted in total.
        """
        start = self.clock
        if start == self.timeline.history_end and start > self.params.start_us:
            # Going live: the sessions the live rate adds to the history's are already running.
            self._warm_up(self.params.rate - self.params.history_rate * traffic_shape(start - 1))
        length = self.timeline.window_length(start)
        end = start + length
        self._window_end = end
        self._start_sessions(start, length, self.timeline.rate_at(start))
        pending: list[tuple] = []
        buckets = self._buckets
        for k in range(start // BUCKET_US, end // BUCKET_US):
            bucket = buckets.pop(k, None)
            if bucket:
                pending += bucket
        pending.sort(key=itemgetter(0))
        views = self._take_views(end)
        if limit is not None:
            views, pending = _first_events(views, pending, limit - self.counts.valid)
        out: list[Message] = self._resend_queue
        self.counts.resends += len(out)
        self._resend_queue = []
        self._emit_views(views, out)
        self._emit(pending, out)
        self.clock = end
        if end >= self._next_sweep:
            self._sweep_recent(end)
        return end, out

    def drain(self) -> Records:
        """The records accumulated since the last call (and forget them)."""
        records, self.records = self.records, Records()
        return records

    # ---------------------------------------------------------------- sessions
    def _uuid(self) -> str:
        return uuid4_str(self._rng.getrandbits(128))

    def _sample_product(self, category: int) -> int:
        cat = self.catalog
        return cat.members[category][pick(cat.member_cum[category], self._rng.random())]

    def _sessions_batch(self, n: int, start: int, length: int) -> None:
        """Start ``n`` sessions in [start, start + length) and schedule all their events.

        The random draws are vectorised (numpy); only the cart logic runs per session.
        """
        g = self._np
        cat = self.catalog
        at = self._buckets
        users_n = self.users
        starts = start + (g.random(n) * length).astype(np.int64)
        x = g.random(n)
        x = np.where(g.random(n) < 0.5, x * x, x)  # heavy shoppers: P(u < m) = sqrt(m / N)
        users = (np.minimum((x * users_n).astype(np.int64), users_n - 1) * self._spread
                 + 12_345) % users_n
        countries, cities = user_homes(users)
        devices = np.searchsorted(_DEVICE_CUM_NP, g.random(n) * _DEVICE_CUM_NP[-1], side="right")
        interests = cat.sample_categories(g.random(n))
        moves = g.random(n)
        views = np.minimum(g.geometric(1 - P_VIEW_MORE, n), MAX_VIEWS)
        v = int(views.sum())
        owner = np.repeat(np.arange(n), views)
        categories = np.where(g.random(v) < P_IN_CATEGORY, interests[owner],
                              cat.sample_categories(g.random(v)))
        products = cat.sample_products(categories, g.random(v))
        durations = np.minimum(300, 5 + g.exponential(35.0, v).astype(np.int64))
        seen = durations * 1_000_000 + (g.random(v) * 20_000_000).astype(np.int64)
        adds = g.random(v) < P_ADD
        quantities = np.searchsorted(_QUANTITY_CUM_NP, g.random(v) * _QUANTITY_CUM_NP[-1],
                                     side="right") + 1
        add_gaps = 1_000_000 + (g.random(v) * 10_000_000).astype(np.int64)
        updates = adds & (g.random(v) < P_UPDATE)
        update_gaps = 1_000_000 + (g.random(v) * 10_000_000).astype(np.int64)
        step = seen + adds * add_gaps + updates * update_gaps
        done = np.cumsum(step)
        before = done - step
        first = np.cumsum(views) - views
        view_times = starts[owner] + before - before[first][owner]
        ends = starts + done[first + views - 1] - before[first]
        finish = g.random((n, 4))  # remove?, which, buy?, checkout time
        session_ids = uuid_text(self._np, n)
        floor = self._floor
        warming = start < floor  # warm-up: only what is still to happen from the clock's start
        if warming:  # sessions with something left to do: views, or a cart to settle
            carts = np.bincount(owner, weights=adds, minlength=n) > 0
            alive = (ends >= floor) | (carts & (ends + _SESSION_TAIL_US >= floor))
            adds &= alive[owner]
            moves[:] = 1.0
        else:
            alive = np.ones(n, dtype=bool)
        live = np.flatnonzero(alive)
        fragments, keys = people(users[live], session_ids[live])

        sessions: list[Session | None] = [None] * n
        moved = self._moved
        for i, user, country, city, device, move, person, key in zip(
                live.tolist(), users[live].tolist(), countries[live].tolist(),
                cities[live].tolist(), devices[live].tolist(), moves[live].tolist(), fragments,
                keys, strict=True):
            city = moved.get(user, city)
            n_cities = len(CITIES[country])
            relocate = move < P_MOVE and n_cities > 1
            if relocate:
                city = (city + 1 + int(move / P_MOVE * (n_cities - 1))) % n_cities
                moved[user] = city
            session = Session(user, key, person, country, city, device)
            sessions[i] = session
            if relocate:
                t = int(starts[i])
                at[t // BUCKET_US].append((t, MOVE, session, city, None, None))

        times = view_times.tolist()
        product_list = products.tolist()
        shown = np.flatnonzero(view_times >= floor) if warming else np.arange(v)
        shown = shown[np.argsort(view_times[shown], kind="stable")]
        session_array = np.empty(n, dtype=object)
        session_array[:] = sessions
        who = owner[shown]
        self._views.append(_Views(view_times[shown], users[who], products[shown],
                                  durations[shown], session_array[who]))
        events = v

        # Carts: only the sessions that put something in one.
        seen_list = seen.tolist()
        quantity_list = quantities.tolist()
        gap_list = add_gaps.tolist()
        update_set = set(np.flatnonzero(updates).tolist())
        owners = owner.tolist()
        ends_list = ends.tolist()
        finish_list = finish.tolist()
        interest_list = interests.tolist()
        current = -1
        cart: dict[int, int] = {}
        for j in [*np.flatnonzero(adds).tolist(), -1]:
            i = owners[j] if j >= 0 else -1
            if i != current:
                if cart:
                    shopper = sessions[current]
                    assert shopper is not None  # only live sessions have adds
                    events += self._finish_cart(ends_list[current], shopper,
                                                interest_list[current], cart,
                                                finish_list[current])
                current = i
                cart = {}
            if j < 0:
                break
            product = product_list[j]
            shopper = sessions[i]
            assert shopper is not None
            if product in cart or len(cart) >= MAX_LINES:
                continue
            t = times[j] + seen_list[j]
            quantity = quantity_list[j]
            if t >= floor:
                at[t // BUCKET_US].append((t, CART, shopper, product, "add", quantity))
            events += 1
            if j in update_set:
                t += gap_list[j]
                quantity = quantity % MAX_CLEAN_QUANTITY + 1
                if t >= floor:
                    at[t // BUCKET_US].append((t, CART, shopper, product, "update", quantity))
                events += 1
            cart[product] = quantity
        self._sessions += n
        self._scheduled += events

    def _finish_cart(self, t: int, session: Session, interest: int, cart: dict[int, int],
                     draws: list[float]) -> int:
        """Maybe remove a product, then buy or abandon; return the events scheduled."""
        remove, which, buy, checkout = draws
        events = 0
        if remove < P_REMOVE:
            product = list(cart)[int(which * len(cart))]
            quantity = cart.pop(product)
            if t >= self._floor:
                self._buckets[t // BUCKET_US].append(
                    (t, CART, session, product, "remove", quantity))
            events += 1
            t += 1_000_000 + int(which * 10_000_000)
        if cart and buy < P_BUY:
            t += 20_000_000 + int(checkout * 160_000_000)
            events += self._purchase_at(t, session, interest, list(cart.items()))
        return events

    def _purchase_at(self, t: int, session: Session, interest: int,
                     items: list[tuple[int, int]]) -> int:
        """Schedule the purchase of ``items`` (maybe turned into an anomaly); return the
        number of purchase events scheduled."""
        if t < self._floor:  # bought before the clock started
            return 1
        r = self._rng.random
        at = self._buckets
        lines = clean_lines(self.catalog, items)
        kind, param = CLEAN, 0.0
        rate = self.params.anomaly_rate
        if rate and r() < rate:
            kind = INJECTED[int(r() * len(INJECTED))]
            self.counts.injected += 1
            if kind == HIGH_VALUE:
                lines = high_value_lines(self.catalog, self._rng)
            elif kind == UNUSUAL_QUANTITY:
                lines = unusual_quantity_lines(self.catalog, self._rng, lines)
            elif kind == TOTAL_MISMATCH:
                param = 0.05 + 0.45 * r()  # a discount missing from the lines
            else:  # a burst: this purchase and 4 to 6 more within a minute
                extra = 4 + (r() < 0.3) + (r() < 0.1)
                when = t
                for _ in range(extra):
                    when += 2_000_000 + int(r() * 8_000_000)
                    burst = [(self._sample_product(interest), 1)]
                    second = self._sample_product(interest)
                    if r() < 0.4 and second != burst[0][0]:
                        burst.append((second, 1))
                    at[when // BUCKET_US].append(
                        (when, PURCHASE, session, clean_lines(self.catalog, burst), BURST, 0.0))
                at[t // BUCKET_US].append((t, PURCHASE, session, lines, BURST, 0.0))
                return extra + 1
        at[t // BUCKET_US].append((t, PURCHASE, session, lines, kind, param))
        return 1

    # ---------------------------------------------------------------- emission
    def _take_views(self, end: int) -> _Views:
        """The scheduled views before ``end``, sorted by time, out of the chunks."""
        parts = []
        kept = []
        for chunk in self._views:
            stop = int(np.searchsorted(chunk.t, end, side="left"))
            if stop > chunk.done:
                parts.append(chunk.part(chunk.done, stop))
                chunk.done = stop
            if chunk.done < len(chunk.t):
                kept.append(chunk)
        if len(kept) > _MAX_VIEW_CHUNKS:
            kept = [_Views.merge([c.part(c.done, len(c.t)) for c in kept])]
        self._views = kept
        return _Views.merge(parts)

    def _emit_views(self, views: _Views, out: list[Message]) -> None:
        """Product views as messages (vectorised where it pays), with their source records."""
        n = len(views.t)
        if not n:
            return
        heads = self.catalog.json_head
        topic = PRODUCT_VIEWS
        messages = [
            (topic, s.key,
             f'{head}{s.person},{heads[p]},"duration_seconds":{d},{s.view_tail}'.encode())
            for head, s, p, d in zip(event_heads(self._np, views.t), views.session.tolist(),
                                     views.product.tolist(), views.duration.tolist(),
                                     strict=True)
        ]
        out += messages
        self.counts.events[PRODUCT_VIEWS] += n
        self.records.new_customers += _first_seen(self._user_flags, views.user)
        self.records.new_products += _first_seen(self._product_flags, views.product)
        params = self.params
        if params.malformed_rate:
            for i in np.flatnonzero(self._np.random(n) < params.malformed_rate).tolist():
                out.append(malformed(self._rng, *messages[i]))
                self.counts.malformed += 1
        if params.resend_rate:
            for i in np.flatnonzero(self._np.random(n) < params.resend_rate).tolist():
                self._resend_queue.append(messages[i])

    def _emit(self, pending: list[tuple], out: list[Message]) -> None:
        """Turn the window's other events (sorted by time) into messages."""
        n = len(pending)
        if not n:
            return
        r = self._rng.random
        prefixes = event_heads(self._np, np.fromiter(map(itemgetter(0), pending),
                                                     dtype=np.int64, count=n))
        cat = self.catalog
        ids = cat.id_str
        user_seen = self._user_seen
        product_seen = self._product_seen
        new_customers = self.records.new_customers
        new_products = self.records.new_products
        counts = self.counts
        carts = 0
        malformed_rate = self.params.malformed_rate
        resend_rate = self.params.resend_rate
        append = out.append
        for (t, kind, session, a, b, c), head in zip(pending, prefixes, strict=True):
            if kind == CART:
                message = (CART_EVENTS, session.key, (
                    f'{head}{session.person},"product_id":"{ids[a]}","action":"{b}",'
                    f'"quantity":{c}}}').encode())
                carts += 1
                if not product_seen[a]:
                    product_seen[a] = 1
                    new_products.append(a)
            elif kind in (PURCHASE, STOCK):
                made = (self._transaction(t, head, session, a, b, c) if kind == PURCHASE
                        else self._stock_event(head, a, b, c))
                if made is None:
                    continue
                message = made
            else:  # MOVE: no message, the source table learns it
                self._customer_seen(session.user)
                self.records.customer_moves.append((session.user, a, t))
                continue
            if session is not None and not user_seen[session.user]:
                user_seen[session.user] = 1
                new_customers.append(session.user)
            append(message)
            if malformed_rate and r() < malformed_rate:
                append(malformed(self._rng, *message))
                counts.malformed += 1
            if resend_rate and r() < resend_rate:
                self._resend_queue.append(message)
        counts.events[CART_EVENTS] += carts

    def _customer_seen(self, user: int) -> None:
        if not self._user_seen[user]:
            self._user_seen[user] = 1
            self.records.new_customers.append(user)

    def _products_seen(self, lines: list[list[int]]) -> None:
        seen = self._product_seen
        for product, _ in lines:
            if not seen[product]:
                seen[product] = 1
                self.records.new_products.append(product)

    def _transaction(self, t: int, head: str, session: Session,
                     lines: list[list[int]], kind: int, param: float) -> Message | None:
        """A purchase at emission: stock, the rapid-fire guard, the ground truth."""
        user = session.user
        recent = self._recent.get(user)
        if recent is not None:
            oldest = t - RAPID_FIRE_WINDOW_US
            while recent and recent[0] <= oldest:
                recent.popleft()
            if recent and recent[-1] >= t:  # one user's purchases never share a microsecond
                t = recent[-1] + 1
                head = f'{head[:TIME_AT]}{iso_time(t)}{head[TIME_AT + 27:]}'
        count = (len(recent) if recent else 0) + 1
        if count >= RAPID_FIRE_COUNT and kind != BURST:
            self.counts.dropped_purchases += 1  # a clean shopper never fires that fast
            return None
        lines = self.stock.take(t, lines, self._rng, self._schedule)
        if not lines:
            self.counts.dropped_purchases += 1
            return None
        if recent is None:
            recent = self._recent[user] = deque()
        recent.append(t)
        cat = self.catalog
        price = cat.price_cents
        lines_total = sum(price[p] * q for p, q in lines)
        total = lines_total
        if kind == TOTAL_MISMATCH:
            total = lines_total - max(1, int(lines_total * param))
        transaction_id = self._uuid()
        self._products_seen(lines)
        found = ground_truth(cat, lines, total, lines_total, count, session.user_id)
        for anomaly_type, detail in found:
            self.records.anomalies.append(
                (transaction_id, anomaly_type, session.user_id, t, detail))
            self.counts.anomalies[anomaly_type] += 1
        items = ",".join(LINE_JSON % (cat.json_head[p], q, cat.price_str[p]) for p, q in lines)
        payment = PAYMENT_METHODS[pick(_PAYMENT_CUM, self._rng.random())]
        self.counts.events[TRANSACTIONS] += 1
        value = TX_JSON % (head, transaction_id, session.person, session.country,
                            session.city, payment, session.currency, items, money(total))
        return TRANSACTIONS, session.key, value.encode()

    def _schedule(self, t: int, what: tuple[int, str, int]) -> None:
        if t < self._window_end:  # the current window is being emitted: the next one
            t = self._window_end + int(self._rng.random() * BUCKET_US)
        self._buckets[t // BUCKET_US].append((t, STOCK, None, *what))

    def _stock_event(self, head: str, product: int, kind: str, delta: int) -> Message | None:
        delta = self.stock.apply(product, kind, delta)
        if delta == 0:
            return None
        product_id = self.catalog.id_str[product]
        self.counts.events[INVENTORY_EVENTS] += 1
        value = STOCK_JSON % (head, product_id, kind, delta)
        return INVENTORY_EVENTS, product_id.encode(), value.encode()

    def _sweep_recent(self, now: int) -> None:
        """Forget users whose last purchase left the rapid-fire window."""
        oldest = now - RAPID_FIRE_WINDOW_US
        self._recent = {u: d for u, d in self._recent.items() if d and d[-1] > oldest}
        self._next_sweep = now + RAPID_FIRE_WINDOW_US
