"""`cloudsync verify VENUE [--table T] [--repair] [--json]`: compare a venue with the cloud by key range.

Exit status: 0 when the cloud matches the venue (after the repair, with `--repair`), 1 when ranges
still differ or the repair job failed; bad input is one line on stderr and exit 1 as everywhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cloudsync.cli.auth import current_staff, require
from cloudsync.cli.common import CliError, confirm_or_abort, engine_ctx, human_s, state_text
from cloudsync.cli.follow import follow_job, summary
from cloudsync.context import Context
from cloudsync.job_watch import wait_for_job
from cloudsync.verify.compare import Progress, VerifyReport, record_verify, verify_venue
from cloudsync.verify.repair import start_repair, verify_after_repair


def dispatcher():  # type: ignore[no-untyped-def]
    from worker.dispatch import CeleryDispatcher

    return CeleryDispatcher(engine_ctx())


@contextmanager
def _progress_bar(label: str, quiet: bool) -> Iterator[Progress | None]:
    """A terminal progress bar over the rows compared (on stderr, so `--json` output stays clean)."""
    if quiet:
        yield None
        return
    state: dict[str, Any] = {"bar": None}

    def progress(event: dict[str, Any]) -> None:
        if "total_rows" in event:
            state["bar"] = click.progressbar(length=max(int(event["total_rows"]), 1), label=label, file=sys.stderr,
                                             show_eta=True, show_percent=True, width=36,
                                             item_show_func=lambda t: t)
            state["bar"].__enter__()
        elif state["bar"] is not None:
            state["bar"].update(int(event.get("rows", 0)), event.get("table"))

    try:
        yield progress
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)


def _run_verify(ctx: Context, venue_id: str, tables: list[str] | None, range_rows: int | None,
                label: str, quiet: bool) -> VerifyReport:
    with _progress_bar(label, quiet) as progress:
        return verify_venue(ctx, venue_id, tables, chunk_rows=range_rows, progress=progress)


def print_report(report: VerifyReport) -> None:
    what = "table(s)" if report.scope == "tables" else "table(s), repaired ranges only,"
    click.echo(f"venue {report.venue_id}: {len(report.tables)} {what} compared in {human_s(report.elapsed_s)}"
               f" ({report.elapsed_s:.2f}s)")
    for t in report.tables:
        line = (f"  {t.table:<24} venue {t.source_rows:>10,} rows  cloud {t.target_rows:>10,} rows  "
                f"{t.ranges:>4} ranges  ")
        if t.drift:
            line += click.style(f"{len(t.diffs)} range(s) differ", fg="yellow", bold=True)
        else:
            line += click.style("matches", fg="green")
        click.echo(line)
        for d in t.diffs:
            counts = (f"missing {d.missing}, extra {d.extra}, different {d.different} "
                      f"(venue {d.source_rows} rows, cloud {d.target_rows})")
            click.echo("    " + click.style(f"keys {d.describe()}", fg="red") + "  " + counts)
    if report.drift:
        click.secho(f"drift: {len(report.diffs)} range(s) differ; `cloudsync verify {report.venue_id} --repair` "
                    "resyncs only those", fg="yellow")
    else:
        click.secho("the cloud matches the venue", fg="green")


@click.command("verify")
@click.argument("venue_id")
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@click.option("--repair", is_flag=True, help="Resync only the differing ranges as a repair job, then verify again.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--range-rows", type=click.IntRange(min=1), help="Rows per top-level range (default: 4096).")
@click.option("--yes", is_flag=True, help="Repair without asking.")
@click.option("--recheck-tables", is_flag=True,
              help="After a repair, verify the repaired tables whole (default: the repaired ranges).")
@require("cloud.resync", when=lambda kw: bool(kw.get("repair")))
def verify_command(venue_id: str, tables: tuple[str, ...], repair: bool, as_json: bool, range_rows: int | None,
                   yes: bool, recheck_tables: bool) -> None:
    """Compare VENUE_ID's tables with the cloud by key range, with checksums computed in each database.

    Lists the small key ranges that differ, with counts of missing, extra and different rows. With
    --repair, resyncs only those ranges (a normal, guarded, rate-limited job) and verifies again.
    """
    ctx = engine_ctx()
    report = _run_verify(ctx, venue_id, list(tables) or None, range_rows, f"verify {venue_id}", as_json)
    record_verify(ctx, report)
    out: dict[str, Any] = {"before": report.as_dict()}
    if not as_json:
        print_report(report)
    final = report
    if repair and report.drift:
        rows = sum(d.source_rows for d in report.diffs)
        if not as_json:
            confirm_or_abort(f"resync {len(report.diffs)} range(s) (~{rows:,} venue rows) of {venue_id} now?", yes)
        elif not yes:
            raise CliError("--repair with --json needs --yes")
        started = start_repair(ctx, venue_id, report.diffs, dispatcher(), requested_by=current_staff().code)
        assert started is not None
        if not as_json:
            click.secho(f"job {started.job_id} queued: repair of {len(report.diffs)} range(s)", fg="green")
        job = follow_job(ctx, started.job_id) if not as_json else wait_for_job(ctx, started.job_id)
        out["job"] = {"id": job.id, "state": job.state, "rows": job.rows_done, "error": job.error,
                      "elapsed_s": round(job.elapsed_s, 3)}
        if not as_json:
            click.echo(summary(job))
        if job.state != "done":
            if as_json:
                click.echo(json.dumps(out, indent=2, default=str))
            raise CliError(f"repair job {job.id} is {job.state}: {job.error or 'see cloudsync resync show'}")
        final = _run_verify_after(ctx, job.id, as_json, recheck_tables)
        out["after"] = final.as_dict()
        if not as_json:
            click.echo(f"after repair job {job.id} ({state_text(job.state)}):")
            print_report(final)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    if final.drift:
        raise click.exceptions.Exit(1)


def _run_verify_after(ctx: Context, job_id: int, quiet: bool, whole_tables: bool) -> VerifyReport:
    with _progress_bar(f"verify job {job_id}", quiet) as progress:
        return verify_after_repair(ctx, job_id, progress=progress, whole_tables=whole_tables)


def register(root: click.Group) -> None:
    root.add_command(verify_command)
