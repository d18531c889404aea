"""``globalmart api`` and ``globalmart apikey`` (placeholders until the API lands)."""

import click


@click.command()
def api() -> None:
    """Serve the REST API and the web dashboard."""
    raise click.ClickException("the API is not built yet")


@click.group()
def apikey() -> None:
    """Manage API keys."""
