"""The ``globalmart`` command: one entry point for every component.

Each component owns its subcommands (``generator/cli.py``, ``streaming/cli.py``,
``api/cli.py``); this module only gathers them with the platform-wide ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from api.cli import api, apikey
from generator.cli import generate
from globalmart import db
from globalmart.logs import configure
from globalmart.settings import PlatformSettings
from streaming.cli import stream


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """GlobalMart: real-time e-commerce analytics."""
    configure(ctx.invoked_subcommand or "globalmart", logging.DEBUG if verbose else logging.INFO)


@main.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command()
@click.option("--database-url", envvar="GLOBALMART_DATABASE_URL",
              help="Defaults to the platform's.")
@click.option("--create/--no-create", default=True, show_default=True,
              help="Create the database first if it does not exist.")
def upgrade(database_url: str | None, create: bool) -> None:
    """Apply pending schema migrations (idempotent)."""
    url = database_url or PlatformSettings().db_url
    if create and db.ensure_database(url):
        click.echo(f"created database {db.redact(url)}")
    applied = db.upgrade(url)
    for migration in applied:
        click.echo(f"applied {migration.version:03d}_{migration.name}")
    click.echo(f"schema is up to date ({len(db.migrations())} migrations)")


@main.command()
@click.option("--bootstrap-servers", envvar="GLOBALMART_KAFKA_BOOTSTRAP_SERVERS",
              help="Defaults to the platform's.")
def topics(bootstrap_servers: str | None) -> None:
    """Create the platform's topics (3 partitions, 7-day retention) where missing."""
    from globalmart.contracts import ALL_TOPICS
    from globalmart.kafka import ensure_topics

    created = ensure_topics(bootstrap_servers or PlatformSettings().bootstrap_servers, ALL_TOPICS)
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.group()
def contracts() -> None:
    """Event contracts."""


@contracts.command(name="export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path),
                default=Path("docs/contracts"))
def export_contracts(directory: Path) -> None:
    """Write the JSON Schema of every topic into DIRECTORY."""
    from globalmart.contracts import export_json_schemas

    for path in export_json_schemas(directory):
        click.echo(str(path))


@main.command()
@click.option("--rate", type=float, default=500.0, show_default=True,
              help="Generator events per second.")
@click.option("--without", "without", multiple=True,
              type=click.Choice(["generator", "stream", "dagster", "api"]),
              help="Do not start this component (repeatable).")
@click.option("--no-history", is_flag=True,
              help="On an empty GLOBALMART_HOME, do not emit the first start's past days "
                   "(GLOBALMART_HISTORY_DAYS, 3, at GLOBALMART_HISTORY_RATE, 0.4).")
def up(rate: float, without: tuple[str, ...], no_history: bool) -> None:
    """Start the whole platform on this machine; Ctrl-C stops everything it started. A
    component that exits is restarted with back-off."""
    from launcher.runtime import run_platform

    raise SystemExit(run_platform(PlatformSettings(), rate=rate, without=set(without),
                                  history=not no_history))


main.add_command(generate)
main.add_command(stream)
main.add_command(api)
main.add_command(apikey)
