"""The world the generator simulates: 100 categories, the product catalogue and the users.

Everything here is a pure function of an id (product index, user index): the same product or
user has the same attributes in every run, whatever the seed or the scale, so the source tables
stay consistent across runs. Users are never materialised (10 M of them): their attributes are
derived on demand by hashing the user index. Products are built once, vectorised (250,000 in
well under a second), with Zipf-like popularity inside each category.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate

import numpy as np

from globalmart.contracts import COUNTRIES

M64 = (1 << 64) - 1

# Category families, their price range in dollars (DESIGN.md) and their categories (100 in all).
FAMILIES: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {
    "Electronics": ((50, 2000), (
        "Smartphones", "Laptops", "Tablets", "Headphones", "Cameras", "Televisions",
        "Smartwatches", "Gaming Consoles", "Monitors", "Speakers", "Printers", "Networking",
        "Storage Devices", "Computer Accessories", "Drones", "E-Readers")),
    "Clothing": ((10, 200), (
        "Shirts", "T-Shirts", "Jeans", "Trousers", "Dresses", "Skirts", "Jackets", "Coats",
        "Sweaters", "Hoodies", "Activewear", "Sleepwear", "Underwear", "Socks", "Shoes",
        "Sneakers")),
    "Home & Garden": ((15, 500), (
        "Furniture", "Bedding", "Kitchenware", "Cookware", "Lighting", "Home Decor", "Rugs",
        "Storage & Organization", "Bath", "Garden Tools", "Outdoor Furniture", "Plants & Seeds",
        "Grills", "Cleaning Supplies", "Small Appliances", "Power Tools")),
    "Books": ((10, 50), (
        "Fiction", "Mystery & Thriller", "Science Fiction", "Fantasy", "Romance", "Biography",
        "History", "Science", "Business", "Cookbooks", "Self-Help", "Comics & Graphic Novels")),
    "Sports": ((20, 300), (
        "Fitness Equipment", "Yoga", "Running", "Cycling", "Camping", "Hiking", "Swimming",
        "Team Sports", "Tennis", "Golf", "Fishing", "Winter Sports", "Water Sports",
        "Sports Nutrition")),
    "Toys & Games": ((10, 200), (
        "Board Games", "Puzzles", "Action Figures", "Dolls", "Building Sets")),
    "Beauty & Health": ((10, 200), (
        "Skincare", "Makeup", "Hair Care", "Fragrances", "Vitamins", "Personal Care")),
    "Grocery": ((10, 200), (
        "Coffee & Tea", "Snacks", "Beverages", "Pantry Staples", "Gourmet Food")),
    "Pets": ((10, 200), ("Dog Supplies", "Cat Supplies", "Aquarium", "Pet Food")),
    "Automotive": ((10, 200), ("Car Care", "Car Parts", "Motorcycle Gear")),
    "Office": ((10, 200), ("Office Supplies", "Stationery", "Office Furniture")),
}
CATEGORIES: tuple[str, ...] = tuple(c for _, cats in FAMILIES.values() for c in cats)
FAMILY_OF: dict[str, str] = {c: f for f, (_, cats) in FAMILIES.items() for c in cats}
N_CATEGORIES = len(CATEGORIES)
assert N_CATEGORIES == 100 and len(set(CATEGORIES)) == 100

BRANDS: dict[str, tuple[str, ...]] = {
    "Electronics": ("Voltix", "Nordlys", "Quantia", "Helix", "Aperion", "Zentra", "Orbital"),
    "Clothing": ("Marlowe", "Fjordwear", "Urbanest", "Linnea", "Cotton & Co", "Redwood"),
    "Home & Garden": ("Hearthly", "Greenhaus", "Casa Nova", "Oakline", "Bloomfield"),
    "Books": ("Penrose Press", "Lantern Books", "Quill House", "Northwind Publishing"),
    "Sports": ("Stridex", "Peakform", "Vantage", "Tidewater", "Summit Gear"),
}
OTHER_BRANDS = ("Everyday", "Brightside", "Kinfolk", "Mapleton", "Silverline", "Acorn")

FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Oliver", "Amelia", "George", "Isla", "Harry", "Ava",
    "Noah", "Olivia", "Liam", "Emma", "Lucas", "Chloe", "Leon", "Mia", "Paul", "Hannah",
    "Louis", "Jade", "Hugo", "Lea", "Felix", "Sophie", "Jonas", "Clara", "Ethan", "Zoe",
    "Gabriel", "Alice",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Taylor", "Clark", "Walker", "Wright", "Evans", "Roberts", "Green", "Hall", "Wood",
    "Tremblay", "Roy", "Gagnon", "Martin", "Muller", "Schmidt", "Schneider", "Fischer", "Weber",
    "Meyer", "Wagner", "Becker", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit",
    "Durand", "Leroy", "Moreau", "Laurent",
)
LOYALTY_TIERS = (("bronze", 60), ("silver", 25), ("gold", 12), ("platinum", 3))
COUNTRY_SHARE = {"USA": 40, "UK": 18, "Germany": 16, "France": 14, "Canada": 12}
COUNTRY_NAMES: tuple[str, ...] = tuple(COUNTRIES)
CURRENCIES: tuple[str, ...] = tuple(COUNTRIES[c][0] for c in COUNTRY_NAMES)
CITIES: tuple[tuple[str, ...], ...] = tuple(COUNTRIES[c][1] for c in COUNTRY_NAMES)

_SIGNUP_FIRST = date(2016, 1, 1)
_SIGNUP_DAYS = (date(2025, 6, 30) - _SIGNUP_FIRST).days
_PRODUCT_SALT = 0x5EED_0F_C0FFEE
_USER_SALT = 0x05E4_5A17_0000_0001
_CATEGORY_SALT = 0xCA7E_6042
ZIPF_EXPONENT = 1.0  # popularity of the product at rank r inside its category ∝ 1 / (r + 1)


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _mix64_array(x: np.ndarray) -> np.ndarray:
    """:func:`mix64` over a uint64 array (wrap-around arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def cumulative(weights: list[float] | list[int]) -> list[float]:
    """Running sums of ``weights`` (for sampling with :func:`pick`)."""
    return list(accumulate(float(w) for w in weights))


_COUNTRY_CUM = cumulative([COUNTRY_SHARE[c] for c in COUNTRY_NAMES])
_CITY_CUM = tuple(
    cumulative([1.0 / (i + 1) ** 0.8 for i in range(len(cities))]) for cities in CITIES
)
_TIER_CUM = cumulative([w for _, w in LOYALTY_TIERS])


def pick(cum: list[float], unit: float) -> int:
    """Index drawn from cumulative weights with ``unit`` in [0, 1)."""
    return bisect(cum, unit * cum[-1])


def _unit(h: int, shift: int) -> float:
    """A uniform [0, 1) value from 16 bits of the hash ``h``."""
    return ((h >> shift) & 0xFFFF) / 65536.0


def user_id(index: int) -> str:
    """The user id of a user index."""
    return f"U{index:08d}"


def product_id(index: int) -> str:
    """The product id of a product index."""
    return f"P{index:06d}"


def user_home(index: int) -> tuple[int, int]:
    """(country index, city index) where a user lives, before any move."""
    h = mix64(index ^ _USER_SALT)
    country = pick(_COUNTRY_CUM, _unit(h, 0))
    return country, pick(_CITY_CUM[country], _unit(h, 16))


def user_homes(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`user_home` of many users at once (same results, vectorised)."""
    h = _mix64_array(users.astype(np.uint64) ^ np.uint64(_USER_SALT))
    country_unit = (h & np.uint64(0xFFFF)).astype(np.float64) / 65536.0
    city_unit = ((h >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float64) / 65536.0
    cum = np.array(_COUNTRY_CUM)
    country = np.searchsorted(cum, country_unit * cum[-1], side="right")
    city = np.zeros(len(users), dtype=np.int64)
    for c, city_cum in enumerate(_CITY_CUM):
        mask = country == c
        cities = np.array(city_cum)
        city[mask] = np.searchsorted(cities, city_unit[mask] * cities[-1], side="right")
    return country, city


@dataclass(frozen=True)
class Customer:
    """A customer's attributes as written to ``source.customers``."""

    user_id: str
    full_name: str
    email: str
    country: str
    city: str
    signup_date: date
    loyalty_tier: str


def customer(index: int, city_index: int | None = None) -> Customer:
    """The attributes of user ``index`` (optionally after a move to ``city_index``)."""
    h = mix64(index ^ _USER_SALT)
    country, city = user_home(index)
    if city_index is not None:
        city = city_index
    g = mix64(h)
    first = FIRST_NAMES[g % len(FIRST_NAMES)]
    last = LAST_NAMES[(g >> 8) % len(LAST_NAMES)]
    tier = LOYALTY_TIERS[pick(_TIER_CUM, _unit(g, 16))][0]
    signup = _SIGNUP_FIRST + timedelta(days=(g >> 32) % (_SIGNUP_DAYS + 1))
    return Customer(
        user_id=user_id(index),
        full_name=f"{first} {last}",
        email=f"{first}.{last}.{index}@example.com".lower(),
        country=COUNTRY_NAMES[country],
        city=CITIES[country][city],
        signup_date=signup,
        loyalty_tier=tier,
    )


@dataclass(frozen=True)
class Product:
    """A product's attributes as written to ``source.products``."""

    product_id: str
    product_name: str
    category: str
    brand: str
    list_price_cents: int
    initial_stock: int


class Catalog:
    """The products (built once, vectorised) and everything the simulation samples from.

    Attributes are lists indexed by product index, ready for the hot path: ``price_cents``,
    ``category_of``, ``initial_stock``, ``id_str`` and ``json_head`` (the product's
    ``"product_id":…,"category":…`` JSON fragment). Products of a category are sampled with
    Zipf-like popularity; categories themselves with a milder Zipf over a hashed order.
    """

    def __init__(self, n_products: int) -> None:
        if n_products < N_CATEGORIES:
            raise ValueError(f"need at least {N_CATEGORIES} products, one per category")
        self.size = n_products
        idx = np.arange(n_products, dtype=np.uint64)
        h = _mix64_array(idx ^ np.uint64(_PRODUCT_SALT))
        category = (idx % np.uint64(N_CATEGORIES)).astype(np.int64)
        family_lo = np.empty(N_CATEGORIES)
        family_hi = np.empty(N_CATEGORIES)
        for c, name in enumerate(CATEGORIES):
            lo, hi = FAMILIES[FAMILY_OF[name]][0]
            family_lo[c], family_hi[c] = lo, hi
        low, high = family_lo[category], family_hi[category]
        unit = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32
        dollars = np.floor(np.exp(np.log(low) + unit * (np.log(high) - np.log(low))))
        price = np.minimum(dollars * 100 + 99, high * 100 - 1).astype(np.int64)
        # Rank inside the category by a second hash: popularity is unrelated to the id.
        order = np.lexsort(((h >> np.uint64(32)), category))
        rank = np.empty(n_products, dtype=np.int64)
        starts = np.searchsorted(category[order], np.arange(N_CATEGORIES))
        sizes = np.diff(np.append(starts, n_products))
        rank[order] = np.arange(n_products) - np.repeat(starts, sizes)
        stock = (50 + (h >> np.uint64(20)) % np.uint64(451)).astype(np.int64)
        stock = np.where(rank < 25, stock * 4, stock)

        self.price_cents: list[int] = price.tolist()
        self.category_of: list[int] = category.tolist()
        self.initial_stock: list[int] = stock.tolist()
        self._hash: list[int] = h.tolist()
        self.id_str: list[str] = [f"P{i:06d}" for i in range(n_products)]
        self.price_str: list[str] = [f"{p // 100}.{p % 100:02d}" for p in self.price_cents]
        self.json_head: list[str] = [
            f'"product_id":"{pid}","category":"{CATEGORIES[c]}"'
            for pid, c in zip(self.id_str, self.category_of, strict=True)
        ]
        # Sampling: members of each category by rank, with cumulative Zipf weights.
        self.members: list[list[int]] = []
        self.member_cum: list[list[float]] = []
        for c in range(N_CATEGORIES):
            members = order[starts[c]:starts[c + 1] if c + 1 < N_CATEGORIES else n_products]
            self.members.append(members.tolist())
            self.member_cum.append(
                cumulative([1.0 / (r + 1) ** ZIPF_EXPONENT for r in range(len(members))])
            )
        category_rank = sorted(range(N_CATEGORIES), key=lambda c: mix64(c ^ _CATEGORY_SALT))
        weight = [0.0] * N_CATEGORIES
        for r, c in enumerate(category_rank):
            weight[c] = 1.0 / (r + 1) ** 0.7
        self.category_cum = cumulative(weight)
        # The same, flattened for vectorised sampling: category c's members sit at
        # [first[c], first[c + 1]) of flat_members, with cumulative weights shifted by base[c].
        self._category_cum = np.array(self.category_cum)
        self._flat_members = order.astype(np.int64)
        totals = np.array([cum[-1] for cum in self.member_cum])
        self._base = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
        self._total = totals
        self._last = np.append(starts[1:], n_products) - 1
        self._flat_cum = np.concatenate(
            [base + np.array(cum) for base, cum in zip(self._base, self.member_cum, strict=True)]
        )
        by_price = np.argsort(price, kind="stable")
        cheap = np.flatnonzero(price <= 3000)
        self.cheap: list[int] = (cheap if len(cheap) >= 5 else by_price[:5]).tolist()
        self.expensive: list[int] = by_price[-max(5, n_products // 100):].tolist()

    def product(self, index: int) -> Product:
        """The attributes of product ``index``."""
        h = self._hash[index]
        category = CATEGORIES[self.category_of[index]]
        brands = BRANDS.get(FAMILY_OF[category], OTHER_BRANDS)
        brand = brands[(h >> 40) % len(brands)]
        model = f"{chr(65 + (h >> 52) % 26)}-{(h >> 12) % 900 + 100}"
        return Product(
            product_id=self.id_str[index],
            product_name=f"{brand} {category} {model}",
            category=category,
            brand=brand,
            list_price_cents=self.price_cents[index],
            initial_stock=self.initial_stock[index],
        )

    def sample_categories(self, units: np.ndarray) -> np.ndarray:
        """Categories drawn by popularity, one per uniform [0, 1) value."""
        cum = self._category_cum
        return np.searchsorted(cum, units * cum[-1], side="right")

    def sample_products(self, categories: np.ndarray, units: np.ndarray) -> np.ndarray:
        """A product of each category, drawn by Zipf-like popularity (vectorised)."""
        targets = self._base[categories] + units * self._total[categories]
        positions = np.searchsorted(self._flat_cum, targets, side="right")
        return self._flat_members[np.minimum(positions, self._last[categories])]
