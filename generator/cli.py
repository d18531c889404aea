"""``globalmart generate``: realistic e-commerce events into Kafka (see ``generator/runner.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import click


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--history-end") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--rate", type=float, help="Live events per second.  [default: 500]")
@click.option("--duration", type=float,
              help="Seconds of live production after the history (0: stop after the history). "
                   " [default: forever]")
@click.option("--seed", type=int, help="Random seed: the same seed gives the same events.  "
                                       "[default: 42]")
@click.option("--history-days", type=int,
              help="First emit this many past days (from midnight UTC N days ago up to now) as "
                   "fast as possible, with daily and weekly seasonality.  [default: 0]")
@click.option("--history-rate", type=float,
              help="Mean events per simulated second in the history.  [default: 40, about "
                   "100,000 transactions a day]")
@click.option("--history-end", type=str,
              help="End of the history, ISO 8601 (UTC unless an offset is given, e.g. "
                   "2026-05-10T00:00:00Z); default: now.")
@click.option("--users", type=int, help="Users in the world.  [default: 10,000,000]")
@click.option("--products", type=int, help="Products in the world (>= 100).  [default: 250,000]")
@click.option("--anomaly-rate", type=float,
              help="Share of purchases turned into an injected anomaly.  [default: 0.01]")
@click.option("--malformed-rate", type=float,
              help="Malformed messages per valid event (sent in addition).  [default: 0]")
@click.option("--resend-rate", type=float,
              help="Share of events sent twice, byte for byte.  [default: 0]")
@click.option("--max-events", type=int, help="Stop after this many valid events.")
@click.option("--bootstrap-servers", help="Kafka bootstrap servers.  [default: the platform's]")
@click.option("--database-url", help="PostgreSQL URL of the source tables.  "
                                     "[default: the platform's]")
@click.option("--no-database", is_flag=True,
              help="Do not write the source tables (Kafka only).")
@click.option("--compression", type=click.Choice(["lz4", "zstd", "snappy", "gzip", "none"]),
              help="Kafka compression codec.  [default: lz4]")
def generate(bootstrap_servers: str | None, database_url: str | None, no_database: bool,
             **options: object) -> None:
    """Produce realistic e-commerce events into Kafka.

    Sessions move through a funnel (product views, cart adds/updates/removes, purchase or
    abandonment) in a world of 10 M users and 250,000 products in 100 categories; purchases
    deplete stock and trigger restocks; anomalies are injected and recorded in
    source.injected_anomalies. Every option also reads GLOBALMART_GENERATOR_<OPTION>.
    Ctrl-C (or SIGTERM) stops cleanly: flush, summary, exit 0.
    """
    import signal
    import threading

    from pydantic import ValidationError

    from generator.config import GeneratorSettings
    from generator.runner import GeneratorError, run
    from globalmart.settings import PlatformSettings

    given = {name: value for name, value in options.items() if value is not None}
    if "history_end" in given:
        given["history_end"] = _utc(str(given["history_end"]))
    if no_database:
        given["write_sources"] = False
    try:
        settings = GeneratorSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        click.echo(f"generator: {signal.Signals(signum).name} received, stopping", err=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    click.echo(
        f"generator: {settings.rate:g} events/s live"
        + (f" after {settings.history_days} day(s) of history" if settings.history_days else "")
        + f", seed {settings.seed}, {settings.users:,} users, {settings.products:,} products, "
        f"Kafka {bootstrap_servers or PlatformSettings().bootstrap_servers}"
    )
    try:
        summary = run(settings, bootstrap_servers=bootstrap_servers, database_url=database_url,
                      stop=stop, echo=click.echo)
    except GeneratorError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary.line())
    if summary.failed or summary.undelivered:
        raise click.ClickException(
            f"{summary.failed + summary.undelivered:,} messages were not delivered")
