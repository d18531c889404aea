"""Event contracts: the single source of truth for every Kafka topic's payload.

Producers and the streaming validator both derive from these models; ``globalmart contracts
export DIR`` writes their JSON Schemas. Money is exact: two decimal places, carried as JSON
numbers and read as decimals downstream.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from globalmart.vocabulary import Severity

SCHEMA_VERSION: Literal[1] = 1

COUNTRIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # country: (currency, cities)
    "USA": ("USD", ("New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Seattle")),
    "UK": ("GBP", ("London", "Manchester", "Birmingham", "Leeds", "Glasgow")),
    "Canada": ("CAD", ("Toronto", "Vancouver", "Montreal", "Calgary", "Ottawa")),
    "Germany": ("EUR", ("Berlin", "Munich", "Hamburg", "Frankfurt", "Cologne")),
    "France": ("EUR", ("Paris", "Lyon", "Marseille", "Toulouse", "Nice")),
}
Country = Literal["USA", "UK", "Canada", "Germany", "France"]
PaymentMethod = Literal["credit_card", "paypal", "debit_card", "apple_pay", "google_pay"]
Device = Literal["desktop", "mobile", "tablet"]
CartAction = Literal["add", "remove", "update"]
InventoryKind = Literal["restock", "adjustment"]

# Bounds of what every sink can store and the business allows. A line's revenue is at most
# MAX_QUANTITY × MAX_UNIT_PRICE = 100,000,000.00 and a transaction's at most five of those,
# far inside numeric(14,2) (sums of many in one real-time window that still overflow are
# isolated by the stream and dead-lettered); stock deltas stay far inside a 32-bit integer.
MAX_QUANTITY = 1000
MAX_UNIT_PRICE = Decimal("100000.00")
MAX_TOTAL = Decimal("500000000.00")
MAX_STOCK_DELTA = 1_000_000
MAX_LINES = 5
# Text: 1 to 64 characters, none of them a control character (C0, DEL, C1): PostgreSQL text
# cannot hold NUL, and the others are never part of an id, a name or a category.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

Money = Annotated[Decimal, Field(ge=0, le=MAX_TOTAL, max_digits=12, decimal_places=2)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)]


class ContractSettings(BaseSettings):
    """How far from now an event's time may be (``GLOBALMART_CONTRACT_*``): later than the
    future tolerance is rejected (a clock gone wrong, or a forgery that would move the stream's
    watermark); older than the maximum age is rejected too (beyond what the platform keeps; a
    time pandas or PostgreSQL cannot hold). In between, an event behind the stream's watermark
    is late data, not bad input."""

    model_config = SettingsConfigDict(env_prefix="GLOBALMART_CONTRACT_", env_file=".env",
                                      extra="ignore")

    max_future_seconds: float = Field(
        default=300.0, ge=0,
        description="How far in the future an event's time may be (seconds).")
    max_age_days: float = Field(
        default=3650.0, gt=0, le=36500,
        description="How far in the past an event's time may be (days).")


@cache
def contract_settings() -> ContractSettings:
    """The contract's settings, read once per process."""
    return ContractSettings()


def contract_environment() -> dict[str, str]:
    """The contract's settings in effect here, as the ``GLOBALMART_CONTRACT_*`` variables that
    set them: for the processes that validate elsewhere (Spark's executors)."""
    prefix = ContractSettings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper(): str(value)
            for name, value in contract_settings().model_dump().items()}


def _near_now(moment: datetime) -> datetime:
    """``moment`` if it lies within the contract's window around now (see
    :class:`ContractSettings`)."""
    limits = contract_settings()
    now = datetime.now(UTC)
    if moment > now + timedelta(seconds=limits.max_future_seconds):
        raise ValueError(f"more than {limits.max_future_seconds:g} s in the future")
    if moment < now - timedelta(days=limits.max_age_days):
        raise ValueError(f"more than {limits.max_age_days:g} days in the past")
    return moment


class Event(BaseModel):
    """Fields every event carries. Types are strict: no string or boolean is taken for a
    number, no number for a time."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    event_id: UUID
    event_time: Annotated[AwareDatetime, AfterValidator(_near_now), Field(
        description="ISO 8601 with an offset; within GLOBALMART_CONTRACT_MAX_FUTURE_SECONDS "
                    "(300) in the future and GLOBALMART_CONTRACT_MAX_AGE_DAYS (3650) in the "
                    "past of when it is validated.")]
    schema_version: Literal[1] = SCHEMA_VERSION


class LineItem(BaseModel):
    """One line of a transaction; its revenue belongs to its own category."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    product_id: NonEmpty
    category: NonEmpty
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
    unit_price: Annotated[Decimal, Field(gt=0, le=MAX_UNIT_PRICE, max_digits=12,
                                         decimal_places=2)]


class Transaction(Event):
    """A completed purchase. ``total_amount`` should equal Σ quantity × unit_price; an event
    where it does not is still valid (it is the 'total mismatch' anomaly, not malformed input)."""

    transaction_id: NonEmpty
    user_id: NonEmpty
    session_id: NonEmpty
    country: Country
    city: NonEmpty
    payment_method: PaymentMethod
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    items: Annotated[list[LineItem], Field(min_length=1, max_length=MAX_LINES)]
    total_amount: Money

    @property
    def lines_total(self) -> Decimal:
        return sum((i.unit_price * i.quantity for i in self.items), Decimal("0.00"))


class ProductView(Event):
    """A product page view."""

    user_id: NonEmpty
    session_id: NonEmpty
    product_id: NonEmpty
    category: NonEmpty
    duration_seconds: Annotated[int, Field(ge=5, le=300)]
    device: Device
    country: Country


class CartEvent(Event):
    """A change to a shopping cart."""

    user_id: NonEmpty
    session_id: NonEmpty
    product_id: NonEmpty
    action: CartAction
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class InventoryEvent(Event):
    """A stock movement other than a sale: a restock (positive) or an adjustment (either sign)."""

    product_id: NonEmpty
    kind: InventoryKind
    quantity_delta: Annotated[int, Field(ge=-MAX_STOCK_DELTA, le=MAX_STOCK_DELTA)]

    @model_validator(mode="after")
    def _restock_adds(self) -> InventoryEvent:
        if self.kind == "restock" and self.quantity_delta <= 0:
            raise ValueError("a restock must have a positive quantity_delta")
        return self


class Alert(BaseModel):
    """An alert the streaming job raises (critical anomalies, stock transitions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: UUID
    alert_type: NonEmpty
    severity: Severity
    entity_id: NonEmpty
    message: str
    created_at: datetime


class DeadLetter(BaseModel):
    """A rejected input record: the original bytes (UTF-8, replacement on invalid), where it
    came from and why it was rejected. A payload too large for a Kafka message is left out of
    the message (``payload`` empty) and kept whole in the lake's quarantine folder
    (``quarantined_at``) and in ``public.dead_letter``; its size and SHA-256 stay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int
    offset: int
    reason: str
    payload: str
    rejected_at: datetime
    payload_bytes: int | None = None
    payload_sha256: str | None = None
    quarantined_at: str | None = None


# Input topics, their contract and the field used as the message key.
INPUT_TOPICS: dict[str, tuple[type[Event], str]] = {
    "transactions": (Transaction, "user_id"),
    "product_views": (ProductView, "user_id"),
    "cart_events": (CartEvent, "user_id"),
    "inventory_events": (InventoryEvent, "product_id"),
}
ALERTS_TOPIC = "alerts"
DEAD_LETTER_TOPIC = "dead_letter"
ALL_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, ALERTS_TOPIC, DEAD_LETTER_TOPIC)


def parse_event(topic: str, payload: bytes | str) -> Event:
    """Validate one message of an input topic against its contract (raises on invalid)."""
    model, _ = INPUT_TOPICS[topic]
    return model.model_validate_json(payload)


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every topic's payload, keyed by topic."""
    models: dict[str, type[BaseModel]] = {t: m for t, (m, _) in INPUT_TOPICS.items()}
    models[ALERTS_TOPIC] = Alert
    models[DEAD_LETTER_TOPIC] = DeadLetter
    return {topic: model.model_json_schema() for topic, model in models.items()}


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, schema in json_schemas().items():
        path = directory / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
