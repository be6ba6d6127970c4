"""`cloudsync resync full|show|resume|cancel`: full resyncs of a venue."""

from __future__ import annotations

import click

from cloudsync import resync as engine
from cloudsync.access.grants import issue_job_grant
from cloudsync.cli.auth import current_staff, require
from cloudsync.cli.common import engine_ctx, human_s, state_text, when
from cloudsync.cli.follow import follow_job, summary
from cloudsync.cli.preview import confirm_full_resync
from cloudsync.control import jobs as jobrepo
from cloudsync.control.jobs import Job
from cloudsync.keys import decode_key, format_key


def dispatcher():  # type: ignore[no-untyped-def]
    from worker.dispatch import CeleryDispatcher

    return CeleryDispatcher(engine_ctx())


@click.group("resync")
def resync_group() -> None:
    """Full resyncs: rebuild a venue's cloud copy from its database."""


@resync_group.command("full")
@click.argument("venue_id")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk for this job.")
@click.option("--tables", help="Comma-separated subset of the venue's tables.")
@click.option("--during-trading", is_flag=True, help="Run even in the venue's trading hours (recorded on the job).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (automation).")
@require("cloud.resync")
def full(venue_id: str, wait: bool, chunk_rows: int | None, tables: str | None, during_trading: bool,
         yes: bool = False) -> None:
    """Enqueue a full resync of VENUE_ID."""
    ctx = engine_ctx()
    options: dict[str, object] = {}
    if during_trading:
        options["during_trading"] = True
    if chunk_rows:
        options["chunk_rows"] = chunk_rows
    wanted = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
    if wanted:
        options["tables"] = wanted
        source = engine.venue_source(engine.get_venue(ctx.control, venue_id))
        for name in wanted:
            source.table(name)  # refuses names not in the schema before anything is queued
    confirm_full_resync(ctx, venue_id, wanted, yes)
    job_id = engine.request_full_resync(ctx, venue_id, requested_by=current_staff().code, options=options)
    issue_job_grant(ctx.settings, ctx.control, job_id)
    dispatcher().plan_job(job_id)
    click.secho(f"job {job_id} queued: full resync of {venue_id}", fg="green")
    if wait:
        _wait(job_id)


def _wait(job_id: int) -> None:
    job = follow_job(engine_ctx(), job_id)
    click.echo(summary(job))
    if job.state != "done":
        raise click.exceptions.Exit(1)


@resync_group.command("show")
@click.argument("job_id", type=int)
@click.option("--follow", is_flag=True, help="Show a live progress bar until the job ends.")
def show(job_id: int, follow: bool) -> None:
    """A job's state, progress per table and verification."""
    ctx = engine_ctx()
    job = jobrepo.get_job(ctx.control, job_id)
    if follow and job.active:
        job = follow_job(ctx, job_id)
    _print_job(job)


def _print_job(job: Job) -> None:
    ctx = engine_ctx()
    click.echo(f"job {job.id}  venue {job.venue_id}  {job.kind}  {state_text(job.state)}"
               + (f" ({job.pause_reason})" if job.pause_reason else ""))
    click.echo(f"  created {when(job.created_at)}  started {when(job.started_at)}  finished {when(job.finished_at)}")
    click.echo(f"  rows {job.rows_done:,}/{job.rows_total:,}  chunks {job.chunks_done}/{job.chunks_total}  "
               f"{job.rows_per_s:,.0f} rows/s  ETA {human_s(job.eta_s)}")
    tables = (job.verification or {}).get("tables", {})
    for t in jobrepo.table_progress(ctx.control, job.id):
        line = (f"  {t['table_name']:<24} {int(t['done'])}/{int(t['chunks'])} chunks "
                f"{int(t['rows_done'] or 0):>12,} rows")
        if t["failed"]:
            line += click.style(f"  {int(t['failed'])} failed", fg="red")
        check = tables.get(t["table_name"])
        if check:
            line += "  " + (click.style("verified", fg="green") if check["match"]
                            else click.style(f"differs (source {check['source']['rows']:,} rows, cloud "
                                             f"{check['target']['rows']:,})", fg="yellow"))
        click.echo(line)
    for f in jobrepo.failed_chunks(ctx.control, job.id)[:5]:
        click.secho(f"  chunk {f['id']} {f['table_name']} ({format_key(decode_key(f['lo']))}, "
                    f"{format_key(decode_key(f['hi']))}]: {f['error']}", fg="red")
    if job.error:
        click.secho(f"  error: {job.error}", fg="red")


@resync_group.command("resume")
@click.argument("job_id", type=int)
@click.option("--wait", is_flag=True, help="Follow the job until it ends.")
@require("cloud.resync")
def resume(job_id: int, wait: bool) -> None:
    """Continue a stopped, failed or stalled job from its checkpoints."""
    ctx = engine_ctx()
    action, chunk_ids = engine.resume_job(ctx, job_id)
    issue_job_grant(ctx.settings, ctx.control, job_id)  # a fresh grant; the requester stays on the job
    d = dispatcher()
    if action == "plan":
        d.plan_job(job_id)
        click.secho(f"job {job_id} re-queued for planning", fg="green")
    elif action == "finish":
        d.finish_job(job_id)
        click.secho(f"job {job_id}: every chunk is done; finishing", fg="green")
    else:
        d.run_chunks(job_id, chunk_ids)
        click.secho(f"job {job_id} resumed: {len(chunk_ids)} chunks re-queued", fg="green")
    if wait:
        _wait(job_id)


@resync_group.command("cancel")
@click.argument("job_id", type=int)
@require("cloud.resync")
def cancel(job_id: int) -> None:
    """Stop a job; chunks already written stay, `resume` continues it later."""
    job = engine.cancel_job(engine_ctx(), job_id, by=current_staff().code)
    click.secho(f"job {job.id} cancelled", fg="magenta")


def register(root: click.Group) -> None:
    root.add_command(resync_group)
