"""`cloudsync maintenance start|stop|list`: declared maintenance windows, for DBA jobs to call.

While a venue's window is open no resync starts, and a running one waits between chunks (its job
shows as paused) until `stop`. Opening and closing need the `cloud.maintenance` permission (a DBA job
passes CLOUDSYNC_STAFF and CLOUDSYNC_PIN); both are audited.
"""

from __future__ import annotations

import click

from cloudsync.cli.auth import current_staff, require
from cloudsync.cli.common import CliError, engine_ctx, when
from cloudsync.guards import rules


@click.group("maintenance")
def maintenance_group() -> None:
    """Declare index maintenance on a venue database so syncs keep off it."""


@maintenance_group.command("start")
@click.argument("venue_id")
@click.option("--reason", required=True, help="Why, e.g. 'weekly index rebuild'.")
@require("cloud.maintenance")
def start(venue_id: str, reason: str) -> None:
    """Open a maintenance window on VENUE_ID (an open one is kept)."""
    if not reason.strip():
        raise CliError("--reason must say why (e.g. 'weekly index rebuild')")
    window = rules.start_maintenance(engine_ctx().control, venue_id, reason, by=current_staff().code)
    click.secho(f"venue {window.venue_id}: maintenance window open since {when(window.started_at)} "
                f"({window.reason}); syncs wait until `cloudsync maintenance stop {window.venue_id}`", fg="yellow")


@maintenance_group.command("stop")
@click.argument("venue_id")
@require("cloud.maintenance")
def stop(venue_id: str) -> None:
    """Close VENUE_ID's maintenance window; waiting resyncs continue by themselves."""
    window = rules.stop_maintenance(engine_ctx().control, venue_id, by=current_staff().code)
    if window is None:
        raise CliError(f"venue {venue_id} has no open maintenance window")
    click.secho(f"venue {venue_id}: maintenance window closed ({window.reason})", fg="green")


@maintenance_group.command("list")
@click.option("--venue", "venue_id", help="Only this venue.")
@click.option("--all", "show_all", is_flag=True, help="Closed windows too.")
def list_(venue_id: str | None, show_all: bool) -> None:
    """Open maintenance windows (with --all, recent closed ones too)."""
    windows = rules.list_windows(engine_ctx().control, venue_id, open_only=not show_all)
    if not windows:
        click.echo("no open maintenance windows" if not show_all else "no maintenance windows")
        return
    for w in windows:
        state = click.style("open", fg="yellow", bold=True) if w.ended_at is None else "closed"
        click.echo(f"{w.venue_id:<20} {state:<6} since {when(w.started_at)}  until {when(w.ended_at)}  "
                   f"by {w.started_by or '-'}  {w.reason}")


def register(root: click.Group) -> None:
    root.add_command(maintenance_group)
