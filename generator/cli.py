"""``globalmart generate`` (placeholder until the generator lands)."""

import click


@click.command()
def generate() -> None:
    """Produce realistic e-commerce events into Kafka."""
    raise click.ClickException("the generator is not built yet")
