"""`cloudsync demo`: the main job end to end on the embedded default.

Builds a demo venue database, registers it, starts real Celery worker processes on the embedded
Redis, runs a full resync with a live progress bar and checks that the cloud copy equals the venue.
"""

from __future__ import annotations

import time

import click

from cloudsync import resync as engine
from cloudsync.access import audit
from cloudsync.access.grants import issue_job_grant
from cloudsync.cli.common import CliError, engine_ctx, human_s, settings
from cloudsync.cli.follow import follow_job, summary
from cloudsync.control.jobs import active_job
from cloudsync.control.venues import add_venue
from cloudsync.demo.venue import create_demo_venue, plan_sizes
from cloudsync.dsn import mask_dsn
from cloudsync.processes import process_env, start, stop, worker_command

VENUE = "demo"


@click.command("demo")
@click.option("--rows", type=click.IntRange(min=100), default=300_000, show_default=True,
              help="About how many rows the demo venue gets.")
@click.option("--workers", type=click.IntRange(min=1, max=16), default=2, show_default=True,
              help="Celery worker processes to start.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the deterministic demo data.")
def demo(rows: int, workers: int, seed: int) -> None:
    """Run a verified full resync of a demo venue on the embedded default."""
    from worker.app import redis_url_for
    from worker.dispatch import CeleryDispatcher
    from worker.health import wait_for_workers

    s = settings()
    ctx = engine_ctx()
    home = s.home_path
    venue_db = home / "venue-demo.db"
    click.secho(f"cloudsync demo: venue database {venue_db}, cloud database {mask_dsn(s.cloud_dsn.split('///')[-1])}",
                bold=True)
    running = active_job(ctx.control, VENUE) if _venue_exists(ctx) else None
    if running:
        engine.cancel_job(ctx, running.id, by="demo restart")
    total = sum(plan_sizes(rows).values())
    with click.progressbar(length=total, label="building demo venue", width=36) as bar:
        counts = create_demo_venue(f"sqlite:///{venue_db}", rows=rows, seed=seed, progress=bar.update)
    add_venue(ctx.control, VENUE, f"sqlite:///{venue_db}", name="Demo Bar & Grill", timezone="Australia/Sydney",
              pos_version="10.52", replace=True)
    click.echo(f"venue {VENUE}: {sum(counts.values()):,} rows in {len(counts)} tables")

    redis_url = redis_url_for(s)
    env = process_env(s, redis_url)
    procs = [start(worker_command(f"demo{i + 1}", concurrency=1, loglevel="WARNING"), env,
                   home / "logs" / f"worker-demo{i + 1}.log") for i in range(workers)]
    try:
        nodes = wait_for_workers(redis_url, workers, timeout_s=90)
        click.echo(f"{len(nodes)} Celery workers up on {mask_dsn(redis_url)}: {', '.join(sorted(nodes))}")
        started = time.monotonic()
        job_id = engine.request_full_resync(ctx, VENUE, requested_by="demo")
        # the demo needs no login: the job is the server's own, signed for staff "demo" and audited as such
        issue_job_grant(s, ctx.control, job_id)
        audit.record(ctx.control, "demo", "allowed", staff="demo", venue_id=VENUE, job_id=job_id,
                     reason="embedded demo (no login)")
        CeleryDispatcher(ctx).plan_job(job_id)
        job = follow_job(ctx, job_id, timeout_s=3600)
    finally:
        for proc in procs:
            stop(proc)
    click.echo(summary(job))
    if job.state != "done":
        raise CliError(f"demo resync ended {job.state}: {job.error or 'see cloudsync resync show ' + str(job.id)}")
    verification = job.verification or {}
    for name, check in sorted(verification.get("tables", {}).items()):
        mark = click.style("✓", fg="green") if check["match"] else click.style("✗", fg="red")
        click.echo(f"  {mark} {name:<20} {check['source']['rows']:>10,} rows  checksum {check['source']['checksum']}")
    if not verification.get("match"):
        raise CliError("verification failed: the cloud copy differs from the venue")
    wall = time.monotonic() - started
    click.secho(f"verified: cloud copy equals the venue ({job.rows_done:,} rows, {human_s(wall)} wall, "
                f"{job.rows_done / max(wall, 1e-6):,.0f} rows/s)", fg="green", bold=True)
    click.echo("watch live jobs in Flower:  cloudsync flower --insecure-local   (then open http://127.0.0.1:5555)")
    click.echo(f"look at this job:           cloudsync resync show {job.id}")


def _venue_exists(ctx: object) -> bool:
    from cloudsync.control.venues import list_venues

    return any(v.id == VENUE for v in list_venues(engine_ctx().control))


def register(root: click.Group) -> None:
    root.add_command(demo)
