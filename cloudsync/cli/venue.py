"""`cloudsync venue add|list|show`: registering venues and looking at them."""

from __future__ import annotations

import click

from cloudsync.cli.common import engine_ctx
from cloudsync.control.jobs import list_jobs
from cloudsync.control.store import utcnow
from cloudsync.control.venues import add_venue, get_venue, list_venues


@click.group("venue")
def venue_group() -> None:
    """Register venues and show their configuration."""


@venue_group.command("add")
@click.argument("venue_id")
@click.option("--dsn", required=True, help="Venue database URL, e.g. mssql+pyodbc://user:pw@host/db?driver=...")
@click.option("--name", help="Display name.")
@click.option("--schema", help="Source schema (default: the connection's default).")
@click.option("--tables", help="Comma-separated tables to sync (default: every table with a primary key).")
@click.option("--timezone", default="UTC", show_default=True, help="The venue's IANA time zone.")
@click.option("--pos-version", help="POS software version at the venue.")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk for this venue.")
@click.option("--replace", is_flag=True, help="Update the venue if it exists.")
def add(venue_id: str, dsn: str, name: str | None, schema: str | None, tables: str | None, timezone: str,
        pos_version: str | None, chunk_rows: int | None, replace: bool) -> None:
    """Register VENUE_ID with its database (checked: connection, tables, primary keys)."""
    wanted = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
    venue, skipped = add_venue(engine_ctx().control, venue_id, dsn, name=name, schema=schema, tables=wanted,
                               timezone=timezone, pos_version=pos_version, chunk_rows=chunk_rows, replace=replace)
    click.secho(f"venue {venue.id} registered ({venue.masked_dsn})", fg="green")
    for name_ in skipped:
        click.secho(f"warning: table {name_} has no primary key and will not be synced", fg="yellow", err=True)


@venue_group.command("list")
def list_() -> None:
    """One line per venue."""
    venues = list_venues(engine_ctx().control)
    if not venues:
        click.echo("no venues yet: add one with `cloudsync venue add`")
        return
    for v in venues:
        state = click.style("active", fg="green") if v.active else click.style("inactive", fg="yellow")
        click.echo(f"{v.id:<20} {state:<8} {v.name:<30} {v.masked_dsn}")


@venue_group.command("show")
@click.argument("venue_id")
def show(venue_id: str) -> None:
    """A venue's configuration and its latest jobs."""
    ctx = engine_ctx()
    v = get_venue(ctx.control, venue_id)
    click.echo(f"venue:       {v.id} ({v.name})")
    click.echo(f"source:      {v.masked_dsn}" + (f" schema {v.source_schema}" if v.source_schema else ""))
    click.echo(f"tables:      {', '.join(v.tables) if v.tables else 'every table with a primary key'}")
    click.echo(f"time zone:   {v.timezone}")
    click.echo(f"POS version: {v.pos_version or '-'}")
    click.echo(f"change feed: {v.feed or '-'}  every {v.sync_interval_s}s")
    for job in list_jobs(ctx.control, venue_id, limit=5):
        age = int((utcnow() - job.created_at).total_seconds())
        click.echo(f"  job {job.id:<6} {job.kind:<7} {job.state:<10} {job.rows_done:>12,} rows  {age}s ago")


def register(root: click.Group) -> None:
    root.add_command(venue_group)
