"""API keys (table `api.api_keys`, migration 005): generated with 256 bits of entropy, shown once,
stored as SHA-256 hex digests; the API checks them, `globalmart apikey` and `up` manage them.

A fast hash is right here (unlike for passwords): the key is random and long, so there is
nothing to brute-force, and every request checks one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from globalmart import db

KEY_PREFIX = "gm_"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ApiKeyError(RuntimeError):
    """A key operation that cannot be done (duplicate name, unknown name, missing table)."""


@dataclass(frozen=True)
class KeyInfo:
    """What is listed about a key (never the key itself)."""

    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ApiKeyError(f"invalid key name {name!r}: use 1-64 letters, digits, '_', '.', '-'")


def _connect(url: str) -> psycopg.Connection:
    conn = db.connect(url, autocommit=True)
    table = conn.execute("SELECT to_regclass('api.api_keys')").fetchone()
    if table is None or table[0] is None:
        conn.close()
        raise ApiKeyError("table api.api_keys is missing: run `globalmart db upgrade` first")
    return conn


def create_key(url: str, name: str) -> str:
    """Create an active key called ``name`` and return it (the only time it is visible)."""
    _check_name(name)
    key = new_key()
    with _connect(url) as conn:
        try:
            conn.execute(
                "INSERT INTO api.api_keys (name, key_prefix, key_hash) VALUES (%s, %s, %s)",
                (name, key[: len(KEY_PREFIX) + 6], hash_key(key)),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise ApiKeyError(f"an active key named {name!r} exists; revoke it first") from exc
    return key


def list_keys(url: str) -> list[KeyInfo]:
    """Every key, active and revoked, oldest first."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT name, key_prefix, created_at, revoked_at FROM api.api_keys ORDER BY key_id"
        ).fetchall()
    return [KeyInfo(*row) for row in rows]


def revoke_key(url: str, name: str) -> None:
    """Revoke the active key called ``name``."""
    with _connect(url) as conn:
        cur = conn.execute(
            "UPDATE api.api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL",
            (name,),
        )
        if cur.rowcount == 0:
            raise ApiKeyError(f"no active key named {name!r}")
