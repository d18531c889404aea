"""``globalmart api`` (serve the API and dashboard) and ``globalmart apikey`` (manage keys)."""

from __future__ import annotations

import copy
import logging
import os
import re

import click

from globalmart.logs import FORMAT_VARIABLE, JsonFormatter


@click.command()
@click.option("--host", default=None, help="Interface to bind [GLOBALMART_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [GLOBALMART_API_PORT, 8000].")
def api(host: str | None, port: int | None) -> None:
    """Serve the REST API (/api/v1, /docs) and the web dashboard (/dashboard)."""
    import uvicorn

    from api.config import ApiSettings
    from globalmart.db import redact

    settings = ApiSettings()
    host = host or settings.host
    port = port or settings.port
    click.echo(f"GlobalMart API on http://{host}:{port} (docs /docs, dashboard /dashboard, "
               f"database {redact(settings.database_url)})")
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=1,
                access_log=settings.access_log, log_level="info", log_config=_log_config())


class RedactKeys(logging.Filter):
    """Hide the value of a ``key`` query parameter (the dashboard link's API key) in uvicorn's
    access log lines."""

    _KEY = re.compile(r"([?&]key=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = self._KEY.sub(r"\1[redacted]", str(args[2]))
            record.args = tuple(args)
        return True


def _log_config() -> dict:
    """uvicorn's logging configuration with :class:`RedactKeys` on the access log, in the
    platform's log format."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_keys"] = {"()": RedactKeys}
    config["handlers"]["access"]["filters"] = ["redact_keys"]
    if os.environ.get(FORMAT_VARIABLE, "text").lower() == "json":
        for name in ("default", "access"):
            config["formatters"][name] = {"()": JsonFormatter, "component": "api"}
    return config


@click.group()
def apikey() -> None:
    """Manage API keys (stored hashed in api.api_keys)."""


def _database_url() -> str:
    from globalmart.settings import PlatformSettings

    return PlatformSettings().db_url


@apikey.command(name="create")
@click.argument("name")
def create_key(name: str) -> None:
    """Create a key called NAME and print it (it is shown only this once)."""
    from globalmart.keys import ApiKeyError, create_key

    try:
        key = create_key(_database_url(), name)
    except (ApiKeyError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(key)
    click.echo(f"created key {name!r}; store it now, it cannot be shown again", err=True)


@apikey.command(name="list")
def list_keys() -> None:
    """List keys (name, prefix, created, revoked); never the keys themselves."""
    from globalmart.keys import ApiKeyError, list_keys

    try:
        keys = list_keys(_database_url())
    except (ApiKeyError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from exc
    for key in keys:
        revoked = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.name}\t{key.key_prefix}…\tcreated {key.created_at:%Y-%m-%d %H:%M}"
                   f"\t{revoked}")


@apikey.command(name="revoke")
@click.argument("name")
def revoke_key(name: str) -> None:
    """Revoke the active key called NAME."""
    from globalmart.keys import ApiKeyError, revoke_key

    try:
        revoke_key(_database_url(), name)
    except (ApiKeyError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked key {name!r}")
