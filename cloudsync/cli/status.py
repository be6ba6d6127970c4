"""`cloudsync status`: every venue's sync health on one screen, coloured, filterable, exportable."""

from __future__ import annotations

import datetime as dt
import json

import click

from cloudsync.cli.common import Duration, engine_ctx, human_s
from cloudsync.exporting import write_csv, write_xlsx
from cloudsync.status import VenueStatus, venue_statuses

HEADER = (f"{'VENUE':<16} {'POS':<8} {'LAST SUCCESS (UTC)':<19} {'LAG':>7}  {'JOB':<26} {'SERVICES':<9} "
          "LAST ERROR")


def _short(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def status_line(s: VenueStatus) -> str:
    job = f"{s.job_id} {s.job_state} {s.job_progress_pct or 0:.0f}%" if s.job_id is not None else "-"
    error = f"{_short(s.last_error_at)} {s.last_error}" if s.last_error else "-"
    line = (f"{s.venue_id:<16} {s.pos_version or '-':<8} {_short(s.last_success_at):<19} {human_s(s.lag_s):>7}  "
            f"{job:<26} {s.services:<9} {error}")
    if s.reasons and s.colour != "green":
        line += f"  [{'; '.join(s.reasons)}]"
    return line


@click.command("status")
@click.option("--venue", "venue_id", help="Only this venue.")
@click.option("--since", type=Duration(), help="Only venues updated within this period, e.g. 2h.")
@click.option("--errors-only", is_flag=True, help="Only venues whose last sync failed (red).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False), help="Also export to this Excel file.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also export to this CSV file.")
def status(venue_id: str | None, since: dt.timedelta | None, errors_only: bool, as_json: bool,
           xlsx_path: str | None, csv_path: str | None) -> None:
    """One row per venue: POS version, last successful sync, lag, current job, services, last error.

    Red: the last sync failed. Yellow: stale (no success within CLOUDSYNC_STALE_AFTER_S), POS version
    below CLOUDSYNC_MIN_POS_VERSION, or the last verification found differences. Green otherwise.
    """
    statuses = venue_statuses(engine_ctx(), venue_id=venue_id, errors_only=errors_only,
                              since_s=since.total_seconds() if since else None)
    if xlsx_path:
        write_xlsx(statuses, xlsx_path)
    if csv_path:
        write_csv(statuses, csv_path)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    if not statuses:
        click.echo("no venues match" if (venue_id or since or errors_only) else
                   "no venues yet: add one with `cloudsync venue add`")
    else:
        click.echo(click.style(HEADER, bold=True))
        for s in statuses:
            click.secho(status_line(s), fg=s.colour)
    for path in (xlsx_path, csv_path):
        if path:
            click.echo(f"wrote {len(statuses)} rows to {path}", err=True)


def register(root: click.Group) -> None:
    root.add_command(status)
