"""`cloudsync sync VENUE`, `cloudsync beat`, and the change-feed commands of `cloudsync venue`:
`venue changelog install|remove VENUE` and `venue feed VENUE changelog|cursor|change_tracking`."""

from __future__ import annotations

import subprocess
import sys

import click

from cloudsync.cli.common import CliError, engine_ctx, human_s, settings
from cloudsync.cli.venue import venue_group
from cloudsync.feeds import REGISTRY


def beat_command(loglevel: str = "INFO") -> list[str]:
    """The one beat process (see scheduler/beat.py for why exactly one)."""
    return [sys.executable, "-m", "celery", "-A", "scheduler.beat", "beat", "--loglevel", loglevel]


@click.command("sync")
@click.argument("venue_id")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for a running incremental sync of the venue to finish.")
def sync(venue_id: str, wait_s: float) -> None:
    """Run one incremental sync of VENUE_ID now and print what it applied."""
    from cloudsync.incremental import sync_venue

    result = sync_venue(engine_ctx(), venue_id, wait_s=wait_s)
    if result.state == "busy":
        raise CliError(f"venue {venue_id}: another incremental sync is running (try --wait 30)")
    if result.state == "suspended":
        click.secho(f"venue {venue_id}: incremental sync suspended while full resync job {result.job_id} runs; "
                    "it resumes from the resync's starting position", fg="yellow")
        return
    for name, stats in sorted(result.tables.items()):
        click.echo(f"  {name:<28} {stats['keys']:>8,} keys  {stats['upserted']:>8,} upserted  "
                   f"{stats['deleted']:>8,} deleted")
    click.secho(f"venue {venue_id}: {result.changed_keys:,} changed keys applied ({result.rows_upserted:,} upserted, "
                f"{result.rows_deleted:,} deleted) in {human_s(result.duration_s)}"
                if result.changed_keys else f"venue {venue_id}: up to date, nothing to apply", fg="green")


@click.command("beat")
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the scheduler (Celery beat): incremental dispatch, resync reaper, nightly verify. Run exactly one."""
    from cloudsync.processes import process_env
    from worker.app import redis_url_for

    s = settings()
    env = process_env(s, redis_url_for(s))
    try:
        code = subprocess.call(beat_command(loglevel), env=env)
    except KeyboardInterrupt:
        code = 0
    if code:
        raise CliError(f"celery beat exited with status {code}")


@click.group("changelog")
def changelog_group() -> None:
    """Install or remove the trigger-maintained change table at a venue."""


@changelog_group.command("install")
@click.argument("venue_id")
def changelog_install(venue_id: str) -> None:
    """Create cloudsync_changelog and its triggers on every synced table of VENUE_ID (idempotent)."""
    from cloudsync.incremental import install_changelog

    tables = install_changelog(engine_ctx(), venue_id)
    click.secho(f"venue {venue_id}: changelog installed on {len(tables)} tables", fg="green")
    click.echo(f"next: `cloudsync venue feed {venue_id} changelog`, then a full resync starts its position")


@changelog_group.command("remove")
@click.argument("venue_id")
def changelog_remove(venue_id: str) -> None:
    """Drop the changelog triggers and table from VENUE_ID."""
    from cloudsync.incremental import remove_changelog

    remove_changelog(engine_ctx(), venue_id)
    click.secho(f"venue {venue_id}: changelog removed", fg="green")


@click.command("feed")
@click.argument("venue_id")
@click.argument("kind", type=click.Choice(sorted(REGISTRY)))
@click.option("--column", help="cursor: the updated_at / rowversion column every synced table has.")
@click.option("--lag-s", type=click.FloatRange(min=0), help="cursor: seconds a write may take to commit.")
@click.option("--interval", "interval_s", type=click.IntRange(min=1), help="Seconds between incremental syncs.")
def feed(venue_id: str, kind: str, column: str | None, lag_s: float | None, interval_s: int | None) -> None:
    """Choose VENUE_ID's change feed (checked against the venue database first)."""
    from cloudsync.incremental import configure_feed

    if kind == "cursor" and not column:
        raise CliError("the cursor feed needs --column (an updated_at or rowversion column)")
    if kind != "cursor" and (column or lag_s is not None):
        raise CliError("--column and --lag-s apply to the cursor feed only")
    options: dict[str, object] = {}
    if column:
        options["column"] = column
    if lag_s is not None:
        options["lag_s"] = lag_s
    venue = configure_feed(engine_ctx(), venue_id, kind, options, interval_s=interval_s)
    click.secho(f"venue {venue.id}: change feed {kind} every {venue.sync_interval_s}s", fg="green")


def register(root: click.Group) -> None:
    root.add_command(sync)
    root.add_command(beat)
    venue_group.add_command(changelog_group)
    venue_group.add_command(feed)
