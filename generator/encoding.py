"""The simulation's events as Kafka messages: JSON written from templates and byte matrices
(vectorised where the volume is: event heads, user and session fragments, UUIDs), exact
decimals, and the message type ``(topic, key, value)``."""

from __future__ import annotations

import numpy as np

from generator.catalog import CITIES, COUNTRY_NAMES, CURRENCIES, user_id
from generator.clock import DAY_US

Message = tuple[str, bytes, bytes]  # topic, key, value
TOPICS: tuple[str, ...] = ("transactions", "product_views", "cart_events", "inventory_events")
TRANSACTIONS, PRODUCT_VIEWS, CART_EVENTS, INVENTORY_EVENTS = TOPICS

DEVICES = ("mobile", "desktop", "tablet")

_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TWO_DIGITS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(),
                            dtype=np.uint8).reshape(100, 2)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of each group
_UUID_AT = (0, 9, 14, 19, 24)  # where each group starts in the 36-character text
_PREFIX_TEXT = ('{"event_id":"' + "0" * 36 + '","event_time":"'
                + "2000-01-01T00:00:00.000000Z" + '","schema_version":1,')
_PREFIX = np.frombuffer(_PREFIX_TEXT.encode(), dtype=np.uint8)
_ID_AT = _PREFIX_TEXT.index("0" * 36)
TIME_AT = _PREFIX_TEXT.index("2000-")  # where an event head's event_time starts (27 chars)
_PERSON_TEXT = '"user_id":"U00000000","session_id":"' + "0" * 36 + '"'
_PERSON = np.frombuffer(_PERSON_TEXT.encode(), dtype=np.uint8)
_PERSON_USER_AT = _PERSON_TEXT.index("U0") + 1  # the 8 digits of the user id
_PERSON_SESSION_AT = _PERSON_TEXT.index("0" * 36)
_VIEW_TAILS = tuple(tuple(f'"device":"{d}","country":"{c}"}}' for c in COUNTRY_NAMES)
                    for d in DEVICES)

TX_JSON = ('%s"transaction_id":"%s",%s,'
           '"country":"%s","city":"%s","payment_method":"%s","currency":"%s","items":[%s],'
           '"total_amount":%s}')
LINE_JSON = '{%s,"quantity":%d,"unit_price":%s}'
STOCK_JSON = '%s"product_id":"%s","kind":"%s","quantity_delta":%d}'


def uuid4_str(bits: int) -> str:
    """A version-4 UUID string from 128 random bits."""
    h = "%032x" % ((bits & _UUID_CLEAR) | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rows_text(rows: np.ndarray) -> list[str]:
    """Each row of an ASCII uint8 matrix as a string."""
    width = rows.shape[1]
    text = rows.tobytes().decode("ascii")
    return [text[i:i + width] for i in range(0, len(text), width)]


def money(cents: int) -> str:
    """Non-negative cents as an exact decimal with two places (``1999`` → ``19.99``)."""
    return f"{cents // 100}.{cents % 100:02d}"


def uuid_text(g: np.random.Generator, n: int, times: np.ndarray | None = None) -> np.ndarray:
    """``n`` UUIDs as ASCII, one 36-byte row each (vectorised): version 7 (RFC 9562: the
    first 48 bits are the Unix time in milliseconds) for events at ``times`` (µs), so ids
    follow event time and the stream's de-duplication index grows at one end instead of
    everywhere; version 4 without ``times``."""
    raw = np.frombuffer(g.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
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


def event_heads(g: np.random.Generator, times: np.ndarray) -> list[str]:
    """The common head of each event, ``{"event_id":"…","event_time":"…Z",
    "schema_version":1,``, for events at ``times`` (µs), with fresh version-7 UUIDs
    (vectorised)."""
    n = len(times)
    rows = np.empty((n, len(_PREFIX)), dtype=np.uint8)
    rows[:] = _PREFIX
    rows[:, _ID_AT:_ID_AT + 36] = uuid_text(g, n, times)
    days, in_day = np.divmod(times, DAY_US)
    unique_days, which = np.unique(days, return_inverse=True)
    dates = np.datetime_as_string(unique_days.astype("datetime64[D]")).astype("S10")
    rows[:, TIME_AT:TIME_AT + 10] = dates.view(np.uint8).reshape(-1, 10)[which]
    seconds, micros = np.divmod(in_day, 1_000_000)
    minutes, seconds = np.divmod(seconds, 60)
    hours, minutes = np.divmod(minutes, 60)
    high, low = np.divmod(micros, 10_000)
    at = TIME_AT + 11  # HH:MM:SS.ffffff, two digits at a time
    for value, offset in ((hours, 0), (minutes, 3), (seconds, 6), (high, 9),
                          (low // 100, 11), (low % 100, 13)):
        rows[:, at + offset:at + offset + 2] = _TWO_DIGITS[value]
    return rows_text(rows)


def people(users: np.ndarray, session_ids: np.ndarray) -> tuple[list[str], list[bytes]]:
    """``"user_id":"U…","session_id":"…"`` fragments and user-id keys, built as one byte
    matrix (users below 10^8; larger ids are formatted one by one)."""
    n = len(users)
    if n and int(users.max()) >= 10**8:
        ids = [user_id(u) for u in users.tolist()]
        texts = [f'"user_id":"{u}","session_id":"{s}"' for u, s in zip(
            ids, rows_text(session_ids), strict=True)]
        return texts, [u.encode() for u in ids]
    rows = np.empty((n, len(_PERSON)), dtype=np.uint8)
    rows[:] = _PERSON
    at = _PERSON_USER_AT
    for k, value in enumerate((users // 1_000_000, users // 10_000 % 100, users // 100 % 100,
                               users % 100)):
        rows[:, at + 2 * k:at + 2 * k + 2] = _TWO_DIGITS[value]
    rows[:, _PERSON_SESSION_AT:_PERSON_SESSION_AT + 36] = session_ids
    keys = np.ascontiguousarray(rows[:, at - 1:at + 8]).tobytes()
    return rows_text(rows), [keys[i:i + 9] for i in range(0, 9 * n, 9)]


class Session:
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
