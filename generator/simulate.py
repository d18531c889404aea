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
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import gcd
from operator import itemgetter
from random import Random

import numpy as np

from generator.catalog import (
    CITIES,
    COUNTRY_NAMES,
    CURRENCIES,
    Catalog,
    cumulative,
    pick,
    user_homes,
    user_id,
)
from globalmart.vocabulary import (
    ANOMALY_RULES,
    HIGH_VALUE_THRESHOLD,
    MAX_LINE_QUANTITY,
    RAPID_FIRE_COUNT,
    RAPID_FIRE_WINDOW_SECONDS,
)

TOPICS: tuple[str, ...] = ("transactions", "product_views", "cart_events", "inventory_events")
TRANSACTIONS, PRODUCT_VIEWS, CART_EVENTS, INVENTORY_EVENTS = TOPICS

# The streaming rules' thresholds (globalmart.vocabulary) in the simulation's units; the ground
# truth applies them exactly.
HIGH_VALUE_CENTS = int(HIGH_VALUE_THRESHOLD * 100)
RAPID_FIRE_WINDOW_US = RAPID_FIRE_WINDOW_SECONDS * 1_000_000

BUCKET_US = 100_000  # width of a calendar bucket
LIVE_WINDOW_US = 200_000  # live events leave at most this long after their event_time
HISTORY_WINDOW_EVENTS = 5_000  # history windows hold about this many events
MAX_HISTORY_WINDOW_US = 300_000_000
WARMUP_EVENTS = 2_000_000  # sessions already running when the clock starts (up to 10 min)
MAX_WARMUP_US = 600_000_000
_MAX_VIEW_CHUNKS = 64  # merge the scheduled-view chunks beyond this many
_SESSION_TAIL_US = 300_000_000  # a session's last event is at most this long after its views
DAY_US = 86_400_000_000

# Traffic shape of the history: relative volume per UTC hour and per weekday (Monday first).
HOURLY = (0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.5, 0.75, 0.95, 1.05, 1.1, 1.15,
          1.2, 1.15, 1.1, 1.1, 1.15, 1.25, 1.4, 1.55, 1.6, 1.45, 1.1, 0.7)
WEEKLY = (0.95, 0.92, 0.95, 1.0, 1.05, 1.12, 1.08)
_SHAPE_NORM = (sum(HOURLY) / 24) * (sum(WEEKLY) / 7)

# The funnel.
P_VIEW_MORE = 0.7  # after a view, another view (views per session: 1 + geometric)
MAX_VIEWS = 15
P_IN_CATEGORY = 0.8  # a view stays in the session's category of interest
P_ADD = 0.15  # a viewed product goes into the cart
P_UPDATE = 0.1  # ... and its quantity is then changed
P_REMOVE = 0.25  # a session with a cart removes one product
P_BUY = 0.45  # a session with a cart buys it (else: abandonment)
P_MOVE = 0.0005  # a session's user has just moved to another city
MAX_CLEAN_QUANTITY = 3
MAX_LINES = 5
DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_CUM = cumulative([55, 35, 10])
PAYMENT_METHODS = ("credit_card", "paypal", "debit_card", "apple_pay", "google_pay")
_PAYMENT_CUM = cumulative([40, 20, 20, 12, 8])
_QUANTITY_CUM = cumulative([70, 22, 8])  # 1, 2 or 3 units per cart add
EVENTS_PER_SESSION_GUESS = 4.2  # until the simulation has measured its own

# Calendar event kinds and purchase kinds.
CART, PURCHASE, STOCK, MOVE = range(4)  # kinds of calendar entries (views live apart)
CLEAN, BURST, HIGH_VALUE, UNUSUAL_QUANTITY, TOTAL_MISMATCH = range(5)
_INJECTED = (BURST, HIGH_VALUE, UNUSUAL_QUANTITY, TOTAL_MISMATCH)

_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TWO_DIGITS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(),
                            dtype=np.uint8).reshape(100, 2)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of each group
_UUID_AT = (0, 9, 14, 19, 24)  # where each group starts in the 36-character text
_DEVICE_CUM_NP = np.array(_DEVICE_CUM)
_PREFIX_TEXT = ('{"event_id":"' + "0" * 36 + '","event_time":"'
                + "2000-01-01T00:00:00.000000Z" + '","schema_version":1,')
_PREFIX = np.frombuffer(_PREFIX_TEXT.encode(), dtype=np.uint8)
_ID_AT = _PREFIX_TEXT.index("0" * 36)
_TIME_AT = _PREFIX_TEXT.index("2000-")
_QUANTITY_CUM_NP = np.array(_QUANTITY_CUM)
_PERSON_TEXT = '"user_id":"U00000000","session_id":"' + "0" * 36 + '"'
_PERSON = np.frombuffer(_PERSON_TEXT.encode(), dtype=np.uint8)
_PERSON_USER_AT = _PERSON_TEXT.index("U0") + 1  # the 8 digits of the user id
_PERSON_SESSION_AT = _PERSON_TEXT.index("0" * 36)
_VIEW_TAILS = tuple(tuple(f'"device":"{d}","country":"{c}"}}' for c in COUNTRY_NAMES)
                    for d in DEVICES)

_TX_JSON = ('%s"transaction_id":"%s",%s,'
            '"country":"%s","city":"%s","payment_method":"%s","currency":"%s","items":[%s],'
            '"total_amount":%s}')
_LINE_JSON = '{%s,"quantity":%d,"unit_price":%s}'
_STOCK_JSON = '%s"product_id":"%s","kind":"%s","quantity_delta":%d}'

Message = tuple[str, bytes, bytes]  # topic, key, value


def uuid4_str(bits: int) -> str:
    """A version-4 UUID string from 128 random bits."""
    h = "%032x" % ((bits & _UUID_CLEAR) | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _rows(rows: np.ndarray) -> list[str]:
    """Each row of an ASCII uint8 matrix as a string."""
    width = rows.shape[1]
    text = rows.tobytes().decode("ascii")
    return [text[i:i + width] for i in range(0, len(text), width)]


def money(cents: int) -> str:
    """Non-negative cents as an exact decimal with two places (``1999`` → ``19.99``)."""
    return f"{cents // 100}.{cents % 100:02d}"


def iso_time(t_us: int) -> str:
    """Microseconds since the epoch as ISO-8601 UTC with microseconds (``…T12:00:00.000001Z``)."""
    seconds, micros = divmod(t_us, 1_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as microseconds since the epoch."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def traffic_shape(t_us: int) -> float:
    """Relative traffic at a moment (mean 1 over a week): hour of day × day of week."""
    day, in_day = divmod(t_us, DAY_US)
    return HOURLY[in_day // 3_600_000_000] * WEEKLY[(day + 3) % 7] / _SHAPE_NORM


@dataclass(frozen=True)
class Params:
    """What to simulate: the clock's start, where the history ends and the rates."""

    start_us: int
    history_end_us: int  # the history (shaped, history_rate) runs from start_us to here
    rate: float  # live events per second, from history_end_us on
    history_rate: float = 40.0
    anomaly_rate: float = 0.01
    malformed_rate: float = 0.0
    resend_rate: float = 0.0


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


class _Session:
    """One visit: who, where, on which device, and JSON fragments reused by its events:
    ``person`` (``"user_id":…,"session_id":…``), ``view_tail`` (device and country) and the
    message key (the user id)."""

    __slots__ = ("city", "country", "currency", "key", "person", "user", "view_tail")

    def __init__(self, user: int, key: bytes, person: str, country: int, city: int,
                 device: int) -> None:
        self.user = user
        self.key = key
        self.person = person
        self.country = COUNTRY_NAMES[country]
        self.city = CITIES[country][city]
        self.currency = CURRENCIES[country]
        self.view_tail = _VIEW_TAILS[device][country]

    @property
    def user_id(self) -> str:
        return self.key.decode()


def _people(users: np.ndarray, session_ids: np.ndarray) -> tuple[list[str], list[bytes]]:
    """``"user_id":"U…","session_id":"…"`` fragments and user-id keys, built as one byte
    matrix (users below 10^8; larger ids are formatted one by one)."""
    n = len(users)
    if n and int(users.max()) >= 10**8:
        ids = [user_id(u) for u in users.tolist()]
        texts = [f'"user_id":"{u}","session_id":"{s}"' for u, s in zip(
            ids, _rows(session_ids), strict=True)]
        return texts, [u.encode() for u in ids]
    rows = np.empty((n, len(_PERSON)), dtype=np.uint8)
    rows[:] = _PERSON
    at = _PERSON_USER_AT
    for k, value in enumerate((users // 1_000_000, users // 10_000 % 100, users // 100 % 100,
                               users % 100)):
        rows[:, at + 2 * k:at + 2 * k + 2] = _TWO_DIGITS[value]
    rows[:, _PERSON_SESSION_AT:_PERSON_SESSION_AT + 36] = session_ids
    keys = np.ascontiguousarray(rows[:, at - 1:at + 8]).tobytes()
    return _rows(rows), [keys[i:i + 9] for i in range(0, 9 * n, 9)]


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
        self._history_end = params.history_end_us - params.history_end_us % BUCKET_US
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
        self._stock: dict[int, int] = {}
        self._restocking: set[int] = set()
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
    def rate_at(self, t_us: int) -> float:
        """Target events per second at simulated time ``t_us``."""
        if t_us < self._history_end:
            return self.params.history_rate * traffic_shape(t_us)
        return self.params.rate

    @property
    def in_history(self) -> bool:
        """Whether the clock is still in the history."""
        return self.clock < self._history_end

    def _window_length(self, t_us: int) -> int:
        if t_us >= self._history_end:
            return LIVE_WINDOW_US
        length = int(HISTORY_WINDOW_EVENTS / self.rate_at(t_us) * 1e6)
        length = max(2 * BUCKET_US, min(MAX_HISTORY_WINDOW_US, length))
        length -= length % BUCKET_US
        return min(length, self._history_end - t_us)

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
        rate = self.rate_at(self.clock) if rate is None else rate
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
        if start == self._history_end and start > self.params.start_us:
            # Going live: the sessions the live rate adds to the history's are already running.
            self._warm_up(self.params.rate - self.params.history_rate * traffic_shape(start - 1))
        length = self._window_length(start)
        end = start + length
        self._window_end = end
        self._start_sessions(start, length, self.rate_at(start))
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

    def _uuid_text(self, n: int, times: np.ndarray | None = None) -> np.ndarray:
        """``n`` UUIDs as ASCII, one 36-byte row each (vectorised): version 7 (RFC 9562: the
        first 48 bits are the Unix time in milliseconds) for events at ``times`` (µs), so ids
        follow event time and the stream's de-duplication index grows at one end instead of
        everywhere; version 4 without ``times``."""
        raw = np.frombuffer(self._np.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
        if times is None:
            raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        else:
            millis = (np.asarray(times, dtype=np.int64) // 1000).astype(">u8")
            raw[:, :6] = millis.view(np.uint8).reshape(n, 8)[:, 2:]
            raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        digits = np.empty((n, 32), dtype=np.uint8)
        digits[:, 0::2] = _HEX[raw >> 4]
        digits[:, 1::2] = _HEX[raw & 0x0F]
        text = np.full((n, 36), ord("-"), dtype=np.uint8)
        for (lo, hi), at in zip(_UUID_GROUPS, _UUID_AT, strict=True):
            text[:, at:at + hi - lo] = digits[:, lo:hi]
        return text

    def _prefixes(self, times: np.ndarray) -> list[str]:
        """The common head of each event, ``{"event_id":"…","event_time":"…Z",
        "schema_version":1,``, for events at ``times`` (µs), with fresh version-7 UUIDs
        (vectorised)."""
        n = len(times)
        rows = np.empty((n, len(_PREFIX)), dtype=np.uint8)
        rows[:] = _PREFIX
        rows[:, _ID_AT:_ID_AT + 36] = self._uuid_text(n, times)
        days, in_day = np.divmod(times, DAY_US)
        unique_days, which = np.unique(days, return_inverse=True)
        dates = np.datetime_as_string(unique_days.astype("datetime64[D]")).astype("S10")
        rows[:, _TIME_AT:_TIME_AT + 10] = dates.view(np.uint8).reshape(-1, 10)[which]
        seconds, micros = np.divmod(in_day, 1_000_000)
        minutes, seconds = np.divmod(seconds, 60)
        hours, minutes = np.divmod(minutes, 60)
        high, low = np.divmod(micros, 10_000)
        at = _TIME_AT + 11  # HH:MM:SS.ffffff, two digits at a time
        for value, offset in ((hours, 0), (minutes, 3), (seconds, 6), (high, 9),
                              (low // 100, 11), (low % 100, 13)):
            rows[:, at + offset:at + offset + 2] = _TWO_DIGITS[value]
        return _rows(rows)

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
        session_ids = self._uuid_text(n)
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
        people, keys = _people(users[live], session_ids[live])

        sessions: list[_Session | None] = [None] * n
        moved = self._moved
        for i, user, country, city, device, move, person, key in zip(
                live.tolist(), users[live].tolist(), countries[live].tolist(),
                cities[live].tolist(), devices[live].tolist(), moves[live].tolist(), people,
                keys, strict=True):
            city = moved.get(user, city)
            n_cities = len(CITIES[country])
            relocate = move < P_MOVE and n_cities > 1
            if relocate:
                city = (city + 1 + int(move / P_MOVE * (n_cities - 1))) % n_cities
                moved[user] = city
            session = _Session(user, key, person, country, city, device)
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

    def _finish_cart(self, t: int, session: _Session, interest: int, cart: dict[int, int],
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

    def _clean_lines(self, items: list[tuple[int, int]]) -> list[list[int]]:
        """Lines with quantities ≤ 3 whose total stays ≤ 5,000.00."""
        price = self.catalog.price_cents
        lines: list[list[int]] = []
        total = 0
        for product, quantity in items[:MAX_LINES]:
            q = min(quantity, MAX_CLEAN_QUANTITY)
            while q and total + q * price[product] > HIGH_VALUE_CENTS:
                q -= 1
            if q:
                lines.append([product, q])
                total += q * price[product]
        return lines

    def _purchase_at(self, t: int, session: _Session, interest: int,
                     items: list[tuple[int, int]]) -> int:
        """Schedule the purchase of ``items`` (maybe turned into an anomaly); return the
        number of purchase events scheduled."""
        if t < self._floor:  # bought before the clock started
            return 1
        r = self._rng.random
        at = self._buckets
        lines = self._clean_lines(items)
        kind, param = CLEAN, 0.0
        rate = self.params.anomaly_rate
        if rate and r() < rate:
            kind = _INJECTED[int(r() * len(_INJECTED))]
            self.counts.injected += 1
            if kind == HIGH_VALUE:
                lines = self._high_value_lines()
            elif kind == UNUSUAL_QUANTITY:
                lines = self._unusual_quantity_lines(lines)
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
                        (when, PURCHASE, session, self._clean_lines(burst), BURST, 0.0))
                at[t // BUCKET_US].append((t, PURCHASE, session, lines, BURST, 0.0))
                return extra + 1
        at[t // BUCKET_US].append((t, PURCHASE, session, lines, kind, param))
        return 1

    def _high_value_lines(self) -> list[list[int]]:
        """Expensive products, quantities ≤ 10, total above 5,000.00."""
        r = self._rng.random
        price = self.catalog.price_cents
        pool = self.catalog.expensive
        lines: list[list[int]] = []
        total = 0
        while total <= HIGH_VALUE_CENTS and len(lines) < MAX_LINES:
            product = pool[int(r() * len(pool))]
            if any(line[0] == product for line in lines):
                continue
            quantity = 1 + int(r() * 3)
            lines.append([product, quantity])
            total += quantity * price[product]
        if total <= HIGH_VALUE_CENTS:  # a small catalogue: raise quantities up to 10
            for line in lines:
                while line[1] < MAX_LINE_QUANTITY and total <= HIGH_VALUE_CENTS:
                    line[1] += 1
                    total += price[line[0]]
        return lines

    def _unusual_quantity_lines(self, lines: list[list[int]]) -> list[list[int]]:
        """A cheap product bought by the dozen; the total stays ≤ 5,000.00."""
        r = self._rng.random
        price = self.catalog.price_cents
        pool = self.catalog.cheap
        product = pool[int(r() * len(pool))]
        quantity = MAX_LINE_QUANTITY + 1 + int(r() * 30)
        while quantity > MAX_LINE_QUANTITY + 1 and quantity * price[product] > HIGH_VALUE_CENTS:
            quantity -= 1
        bulk = [product, quantity]
        kept = [line for line in lines if line[0] != product][: MAX_LINES - 1]
        total = quantity * price[product]
        result = []
        for line in kept:
            if total + line[1] * price[line[0]] <= HIGH_VALUE_CENTS:
                result.append(line)
                total += line[1] * price[line[0]]
        result.insert(int(r() * (len(result) + 1)), bulk)
        return result

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
            for head, s, p, d in zip(self._prefixes(views.t), views.session.tolist(),
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
                out.append(self._malformed(*messages[i]))
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
        prefixes = self._prefixes(np.fromiter(map(itemgetter(0), pending), dtype=np.int64,
                                              count=n))
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
                append(self._malformed(*message))
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

    def _transaction(self, t: int, head: str, session: _Session,
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
                head = f'{head[:_TIME_AT]}{iso_time(t)}{head[_TIME_AT + 27:]}'
        count = (len(recent) if recent else 0) + 1
        if count >= RAPID_FIRE_COUNT and kind != BURST:
            self.counts.dropped_purchases += 1  # a clean shopper never fires that fast
            return None
        lines = self._take_stock(t, lines)
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
        found = []
        if total > HIGH_VALUE_CENTS:
            found.append(("high_value", f"total_amount {money(total)} > 5000.00"))
        for p, q in lines:
            if q > MAX_LINE_QUANTITY:
                found.append(("unusual_quantity", f"{cat.id_str[p]} quantity {q} > 10"))
                break
        if count >= RAPID_FIRE_COUNT:
            found.append(("rapid_fire",
                          f"transaction {count} by {session.user_id} within 60 s"))
        if total != lines_total:
            found.append(("total_mismatch",
                          f"total_amount {money(total)} != lines {money(lines_total)}"))
        for anomaly_type, detail in found:
            self.records.anomalies.append(
                (transaction_id, anomaly_type, session.user_id, t, detail))
            self.counts.anomalies[anomaly_type] += 1
        items = ",".join(_LINE_JSON % (cat.json_head[p], q, cat.price_str[p]) for p, q in lines)
        payment = PAYMENT_METHODS[pick(_PAYMENT_CUM, self._rng.random())]
        self.counts.events[TRANSACTIONS] += 1
        value = _TX_JSON % (head, transaction_id, session.person, session.country,
                            session.city, payment, session.currency, items, money(total))
        return TRANSACTIONS, session.key, value.encode()

    def _take_stock(self, t: int, lines: list[list[int]]) -> list[list[int]]:
        """Sell what is in stock; schedule a restock when a product runs low."""
        cat = self.catalog
        stock = self._stock
        sold = []
        for product, quantity in lines:
            have = stock.get(product)
            if have is None:
                have = cat.initial_stock[product]
            q = min(quantity, have)
            if q <= 0 or (q < quantity and quantity > MAX_CLEAN_QUANTITY):
                continue  # out of stock; an injected bulk line is all or nothing
            have -= q
            stock[product] = have
            sold.append([product, q])
            initial = cat.initial_stock[product]
            if have <= max(10, initial // 5) and product not in self._restocking:
                self._restocking.add(product)
                lead = 600_000_000 + int(self._rng.random() * 6_600_000_000)  # 10 to 120 min
                self._schedule(t + lead, (product, "restock", initial))
            elif self._rng.random() < 0.01:  # damaged or found in a count
                delta = -1 - int(self._rng.random() * 2)
                if self._rng.random() < 0.3:
                    delta = 1 + int(self._rng.random() * 5)
                self._schedule(t + 60_000_000 + int(self._rng.random() * 1_740_000_000),
                               (product, "adjustment", delta))
        return sold

    def _schedule(self, t: int, what: tuple[int, str, int]) -> None:
        if t < self._window_end:  # the current window is being emitted: the next one
            t = self._window_end + int(self._rng.random() * BUCKET_US)
        self._buckets[t // BUCKET_US].append((t, STOCK, None, *what))

    def _stock_event(self, head: str, product: int, kind: str, delta: int) -> Message | None:
        have = self._stock.get(product, self.catalog.initial_stock[product])
        if kind == "restock":
            self._restocking.discard(product)
        elif have + delta < 0:
            delta = -have
        if delta == 0:
            return None
        self._stock[product] = have + delta
        product_id = self.catalog.id_str[product]
        self.counts.events[INVENTORY_EVENTS] += 1
        value = _STOCK_JSON % (head, product_id, kind, delta)
        return INVENTORY_EVENTS, product_id.encode(), value.encode()

    def _sweep_recent(self, now: int) -> None:
        """Forget users whose last purchase left the rapid-fire window."""
        oldest = now - RAPID_FIRE_WINDOW_US
        self._recent = {u: d for u, d in self._recent.items() if d and d[-1] > oldest}
        self._next_sweep = now + RAPID_FIRE_WINDOW_US

    # ---------------------------------------------------------------- malformed input
    def _malformed(self, topic: str, key: bytes, value: bytes) -> Message:
        """A broken variant of a valid message: bad JSON, a missing field, a wrong type or a
        negative quantity/price. It gets a fresh event_id so it is never a resend."""
        r = self._rng.random
        choice = int(r() * 4)
        if choice == 0:
            return topic, key, value[: max(1, int(len(value) * (0.2 + 0.6 * r())))]
        event = json.loads(value)
        event["event_id"] = self._uuid()
        if choice == 1:
            required = [k for k in event if k not in ("schema_version",)]
            del event[required[int(r() * len(required))]]
        elif choice == 2:
            event[_WRONG_TYPE[topic]] = "n/a"
        else:
            _NEGATIVE[topic](event)
        return topic, key, json.dumps(event, separators=(",", ":")).encode()


_WRONG_TYPE = {
    TRANSACTIONS: "total_amount",
    PRODUCT_VIEWS: "duration_seconds",
    CART_EVENTS: "quantity",
    INVENTORY_EVENTS: "event_time",
}


def _negative_transaction(event: dict) -> None:
    line = event["items"][0]
    if line["quantity"] % 2:
        line["quantity"] = -line["quantity"]
    else:
        line["unit_price"] = -line["unit_price"]


def _negative_view(event: dict) -> None:
    event["duration_seconds"] = -event["duration_seconds"]


def _negative_cart(event: dict) -> None:
    event["quantity"] = -event["quantity"]


def _negative_stock(event: dict) -> None:
    event["kind"] = "restock"
    event["quantity_delta"] = -abs(event["quantity_delta"])


_NEGATIVE: dict[str, Callable[[dict], None]] = {
    TRANSACTIONS: _negative_transaction,
    PRODUCT_VIEWS: _negative_view,
    CART_EVENTS: _negative_cart,
    INVENTORY_EVENTS: _negative_stock,
}



