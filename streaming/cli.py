"""``globalmart stream``: the Spark Structured Streaming application."""

from __future__ import annotations

import click


@click.command()
@click.option("--available-now", is_flag=True,
              help="Process what the topics hold now, then exit (tests, backfills).")
@click.option("--master", default=None, help="Spark master URL (default: the setting).")
def stream(available_now: bool, master: str | None) -> None:
    """Run the Spark Structured Streaming application until SIGINT/SIGTERM.

    Settings: GLOBALMART_STREAM_* (see streaming/config.py) and the platform's endpoints
    (GLOBALMART_DATABASE_URL, GLOBALMART_KAFKA_BOOTSTRAP_SERVERS, GLOBALMART_LAKE_PATH).
    """
    from globalmart.settings import PlatformSettings
    from streaming.app import CheckpointError, run
    from streaming.config import StreamingSettings

    settings = StreamingSettings()
    if master:
        settings = settings.model_copy(update={"master": master})
    try:
        status = run(settings, PlatformSettings(), available_now=available_now, echo=click.echo)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(status)
