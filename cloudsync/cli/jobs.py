"""`cloudsync jobs`: the latest jobs, per venue or active only, with their progress."""

from __future__ import annotations

import click

from cloudsync.cli.common import engine_ctx, human_s, state_text, when
from cloudsync.control.jobs import list_jobs


@click.command("jobs")
@click.option("--venue", "venue_id", help="Only this venue's jobs.")
@click.option("--active", is_flag=True, help="Only jobs that are queued, running, paused or finishing.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def jobs(venue_id: str | None, active: bool, limit: int) -> None:
    """List jobs, newest first: state, progress, rate and ETA."""
    ctx = engine_ctx()
    if venue_id:
        from cloudsync.control.venues import get_venue

        get_venue(ctx.control, venue_id)  # an unknown venue is an error, not an empty list
    found = list_jobs(ctx.control, venue_id, active_only=active, limit=limit)
    if not found:
        click.echo("no active jobs" if active else "no jobs")
        return
    click.echo(click.style(f"{'JOB':>6} {'VENUE':<16} {'KIND':<8} {'STATE':<10} {'PROGRESS':>8} "
                           f"{'ROWS':>16} {'CHUNKS':>11} {'RATE':>10} {'ETA':>7}  CREATED (UTC)", bold=True))
    for job in found:
        pct = 100.0 * job.rows_done / job.rows_total if job.rows_total else (100.0 if job.state == "done" else 0.0)
        state = state_text(job.state) + " " * max(10 - len(job.state), 0)
        click.echo(f"{job.id:>6} {job.venue_id:<16} {job.kind:<8} {state} {pct:>7.1f}% "
                   f"{job.rows_done:>7,}/{job.rows_total:<8,} {job.chunks_done:>5}/{job.chunks_total:<5} "
                   f"{job.rows_per_s:>8,.0f}/s {human_s(job.eta_s):>7}  {when(job.created_at)}"
                   + (f"  {job.error}" if job.error and not job.active else ""))


def register(root: click.Group) -> None:
    root.add_command(jobs)
