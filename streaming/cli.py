"""``globalmart stream`` (placeholder until the streaming application lands)."""

import click


@click.command()
def stream() -> None:
    """Run the Spark Structured Streaming application."""
    raise click.ClickException("the streaming application is not built yet")
