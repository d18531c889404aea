"""One log format for every process of the platform.

``text`` (a terminal) or ``json`` (one object per line: ``ts``, ``level``, ``component``,
``logger``, ``message``, and ``batch_id`` / ``run_id`` where known), chosen with
``GLOBALMART_LOG_FORMAT``; ``globalmart up`` runs its children with ``json`` so the files under
``logs/`` can be shipped and queried alike. The streaming sink binds the micro-batch id with
:func:`bound`; Dagster's log records carry their run id (``dagster_meta``)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

FORMAT_VARIABLE = "GLOBALMART_LOG_FORMAT"
COMPONENT_VARIABLE = "GLOBALMART_LOG_COMPONENT"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "globalmart_log", default=MappingProxyType({}))


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``batch_id``) to every record logged inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def __init__(self, component: str | None = None) -> None:
        super().__init__()
        self.component = component or os.environ.get(COMPONENT_VARIABLE, "globalmart")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "component": self.component, "logger": record.name,
            "message": record.getMessage(), **_context.get()}
        dagster = getattr(record, "dagster_meta", None)
        if isinstance(dagster, dict) and dagster.get("run_id"):
            entry["run_id"] = dagster["run_id"]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(component: str, level: int = logging.INFO) -> None:
    """Log to stderr in the format ``GLOBALMART_LOG_FORMAT`` names (text by default)."""
    handler = logging.StreamHandler()
    if os.environ.get(FORMAT_VARIABLE, "text").lower() == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
