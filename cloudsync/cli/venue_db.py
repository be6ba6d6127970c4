"""`cloudsync demo-venue`: a demo point-of-sale venue database on any supported server.

The compose file's one-shot seed service runs it against SQL Server 2022 (`--create-database
--change-tracking --keep-existing --register demo-mssql`); by hand it builds a venue to try cloudsync
on PostgreSQL, MariaDB or SQLite. The DSN may come from `DEMO_VENUE_DSN`, so a password never has
to appear on a command line (where `ps` would show it).
"""

from __future__ import annotations

import click

from cloudsync import incremental
from cloudsync.cli.common import engine_ctx
from cloudsync.control.venues import add_venue, list_venues
from cloudsync.demo.databases import seed_demo_venue
from cloudsync.demo.venue import plan_sizes
from cloudsync.dsn import mask_dsn


@click.command("demo-venue")
@click.option("--dsn", required=True, envvar="DEMO_VENUE_DSN", show_envvar=True,
              help="Venue database URL, e.g. mssql+pyodbc://sa:pw@host:1433/venue_demo?driver=ODBC+Driver+18+for+"
                   "SQL+Server&TrustServerCertificate=yes")
@click.option("--rows", type=click.IntRange(min=100), default=300_000, show_default=True,
              help="About how many rows the demo venue gets.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the deterministic demo data.")
@click.option("--create-database", is_flag=True, help="Create the database named in the DSN if it does not exist.")
@click.option("--change-tracking", is_flag=True,
              help="SQL Server: turn Change Tracking (and snapshot isolation) on for the database and every table.")
@click.option("--keep-existing", is_flag=True, help="Leave a demo venue that is already filled as it is.")
@click.option("--register", "venue_id", metavar="VENUE_ID",
              help="Also register the venue under this id (with the change_tracking feed if --change-tracking); "
                   "a venue already registered is left as it is.")
def demo_venue(dsn: str, rows: int, seed: int, create_database: bool, change_tracking: bool, keep_existing: bool,
               venue_id: str | None) -> None:
    """Create and fill a demo venue database at DSN (every table dropped and rebuilt, unless --keep-existing)."""
    click.echo(f"demo venue at {mask_dsn(dsn)}")
    with click.progressbar(length=sum(plan_sizes(rows).values()), label="filling demo venue", width=36) as bar:
        result = seed_demo_venue(dsn, rows, seed, create_database=create_database, change_tracking=change_tracking,
                                 keep_existing=keep_existing, progress=bar.update)
    if result.created_database:
        click.echo("database created")
    verb = "kept" if result.kept else "created"
    click.secho(f"{verb}: {result.rows:,} rows in {len(result.counts)} tables", fg="green")
    if change_tracking:
        click.echo(f"change tracking on for {len(result.tracked_tables)} tables: {', '.join(result.tracked_tables)}")
    if venue_id:
        _register(venue_id, dsn, change_tracking)


def _register(venue_id: str, dsn: str, change_tracking: bool) -> None:
    ctx = engine_ctx()
    if any(v.id == venue_id for v in list_venues(ctx.control)):
        click.echo(f"venue {venue_id} already registered; left as it is")
        return
    venue, _ = add_venue(ctx.control, venue_id, dsn, name=f"Demo venue ({venue_id})")
    if change_tracking:  # checked against the venue: every table must be tracked
        venue = incremental.configure_feed(ctx, venue_id, "change_tracking")
    click.secho(f"venue {venue.id} registered ({venue.masked_dsn}, feed {venue.feed or '-'}); "
                f"start it with: cloudsync resync full {venue.id}", fg="green")


def register(root: click.Group) -> None:
    root.add_command(demo_venue)
