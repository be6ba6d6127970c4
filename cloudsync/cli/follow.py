"""Following a running job in the terminal: a live progress bar per table, fed from the control database.

On a terminal the block of bars is redrawn in place every half second; elsewhere (a pipe, a log,
CliRunner) the bars are printed once, when following stops, so logs are not flooded.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cloudsync.cli.common import human_s, state_text
from cloudsync.context import Context
from cloudsync.control.jobs import Job, table_progress
from cloudsync.job_watch import JobWatch

POLL_S = 0.5
BAR_WIDTH = 28


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """`[##########----------]` for a fraction in [0, 1]."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def table_line(t: dict[str, Any], name_width: int) -> str:
    chunks, done, failed = int(t["chunks"] or 0), int(t["done"] or 0), int(t["failed"] or 0)
    rows_done, rows_est = int(t["rows_done"] or 0), int(t["rows_est"] or 0)
    fraction = done / chunks if chunks else 0.0
    line = (f"  {t['table_name']:<{name_width}} {bar(fraction)} {100 * fraction:5.1f}%  "
            f"{done}/{chunks} chunks  {rows_done:,}/{rows_est:,} rows")
    if failed:
        line += click.style(f"  {failed} failed", fg="red")
    return line


def render(job: Job, tables: list[dict[str, Any]]) -> list[str]:
    """The lines of the live view: the job, then one bar per table."""
    total = job.rows_total or 1
    head = (f"job {job.id} {job.venue_id} {state_text(job.state)}"
            + (f" ({job.pause_reason})" if job.pause_reason else "")
            + f"  {bar(job.rows_done / total)} {100 * min(job.rows_done / total, 1):5.1f}%  "
              f"{job.rows_done:,}/{job.rows_total:,} rows  {job.rows_per_s:,.0f} rows/s  ETA {human_s(job.eta_s)}")
    width = max([len(t["table_name"]) for t in tables] + [8])
    return [head, *(table_line(t, width) for t in tables)]


class _Screen:
    """Redraws a block of lines in place on a terminal; prints only the last block otherwise."""

    def __init__(self) -> None:
        self.live = sys.stdout.isatty()
        self.shown = 0
        self.last: list[str] = []

    def draw(self, lines: list[str]) -> None:
        self.last = lines
        if not self.live:
            return
        if self.shown:
            click.echo(f"\x1b[{self.shown}F", nl=False)  # back to the first line of the block
        for line in lines:
            click.echo("\x1b[2K" + line)
        self.shown = len(lines)

    def close(self) -> None:
        if not self.live:
            for line in self.last:
                click.echo(line)


def follow_job(ctx: Context, job_id: int, timeout_s: float | None = None) -> Job:
    """Show a progress bar per table until the job is no longer active; returns its final state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    screen = _Screen()
    # subscribed before the first read: the job's end wakes the loop at once (its state is read again)
    with JobWatch(ctx, job_id, POLL_S) as watch:
        job = watch.job()
        try:
            while True:
                screen.draw(render(job, table_progress(ctx.control, job_id)))
                if not job.active or (deadline and time.monotonic() > deadline):
                    break
                watch.wait()
                job = watch.job()
        finally:
            screen.close()
    return job


def summary(job: Job) -> str:
    rate = job.rows_per_s
    return (f"job {job.id} {state_text(job.state)}: {job.rows_done:,} rows in {human_s(job.elapsed_s)} "
            f"({rate:,.0f} rows/s)")
