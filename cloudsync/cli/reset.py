"""`cloudsync reset VENUE`: clear a venue's sync state so its next full resync rebuilds it."""

from __future__ import annotations

import click

from cloudsync.cli.auth import require
from cloudsync.cli.common import confirm_or_abort, engine_ctx
from cloudsync.control.venues import get_venue
from cloudsync.reset import reset_venue


@click.command("reset")
@click.argument("venue_id")
@click.option("--purge", is_flag=True, help="Also delete the venue's rows from the cloud database.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@require("cloud.reset")
def reset(venue_id: str, purge: bool, yes: bool) -> None:
    """Clear VENUE_ID's change positions, checkpoints and recorded tables (refused while a resync runs)."""
    ctx = engine_ctx()
    venue = get_venue(ctx.control, venue_id)
    what = "change positions, chunk checkpoints and recorded tables"
    if purge:
        what += click.style(" AND every cloud row of the venue (its cloud services lose their data "
                            "until the next full resync)", fg="red", bold=True)
    confirm_or_abort(f"Reset venue {venue.id} ({venue.name}): clear its {what}?", yes)
    result = reset_venue(ctx, venue.id, purge=purge)
    click.secho(f"venue {venue.id} reset: {result.feed_rows} feed positions, {result.chunks} chunk checkpoints, "
                f"{result.tables} tables cleared", fg="green")
    if purge:
        click.secho(f"purged {sum(result.cloud_rows.values()):,} cloud rows from {len(result.cloud_rows)} tables",
                    fg="yellow")
    click.echo(f"next: cloudsync resync full {venue.id}")


def register(root: click.Group) -> None:
    root.add_command(reset)
