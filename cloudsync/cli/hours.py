"""`cloudsync venue hours|limits`: a venue's trading hours and the limits that hold its sync traffic.

Showing them needs no login; changing them does (`cloud.admin`), because hours and limits are what keep
a resync off a trading venue. Changes are audited.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import click

from cloudsync import guards
from cloudsync.cli.auth import STAFF_ENV, action_name, login
from cloudsync.cli.common import CliError, engine_ctx
from cloudsync.cli.venue import venue_group
from cloudsync.control.venues import get_venue
from cloudsync.guards import rules

CHANGE_PERMISSION = "cloud.admin"
STAFF_HELP = f"Your staff code (or {STAFF_ENV}); changing hours or limits needs {CHANGE_PERMISSION}."


@click.command("hours")
@click.argument("venue_id")
@click.argument("week", required=False)
@click.option("--except", "exceptions", nargs=2, multiple=True, metavar="DATE HOURS",
              help="A dated exception: `2026-12-25 closed` or `2026-12-31 18:00-03:00` (repeatable).")
@click.option("--clear-except", "clear_dates", multiple=True, metavar="DATE", help="Remove a dated exception.")
@click.option("--clear", is_flag=True, help="Remove the weekly schedule (the venue then never counts as trading).")
@click.option("--staff", "staff_code", metavar="CODE", help=STAFF_HELP)
def hours(venue_id: str, week: str | None, exceptions: tuple[tuple[str, str], ...], clear_dates: tuple[str, ...],
          clear: bool, staff_code: str | None) -> None:
    """Show or set VENUE_ID's trading hours, in the venue's own time zone.

    WEEK looks like "mon-fri 07:00-23:30; sat 10:00-02:00; sun closed": days not named are closed, and a
    period ending before it starts runs past midnight.
    """
    ctx = engine_ctx()
    venue = get_venue(ctx.control, venue_id)
    if week and clear:
        raise CliError("give a schedule or --clear, not both")
    if week or clear or exceptions or clear_dates:
        login(CHANGE_PERMISSION, action_name(), venue.id, staff_code)
    if clear:
        rules.clear_hours(ctx.control, venue.id)
        click.secho(f"venue {venue.id}: weekly schedule removed", fg="yellow")
    if week:
        rules.set_week(ctx.control, venue.id, week)
        click.secho(f"venue {venue.id}: trading hours set", fg="green")
    for day, spec in exceptions:
        rules.set_exception(ctx.control, venue.id, day, spec)
        click.secho(f"venue {venue.id}: {day} {spec.strip().lower()}", fg="green")
    for day in clear_dates:
        if not rules.clear_exception(ctx.control, venue.id, day):
            raise CliError(f"venue {venue.id} has no exception on {day}")
        click.secho(f"venue {venue.id}: exception on {day} removed", fg="yellow")
    _show_hours(venue.id, venue.timezone)


def _show_hours(venue_id: str, tz: str) -> None:
    ctx = engine_ctx()
    schedule = rules.load_schedule(ctx.control, venue_id)
    _, dated = rules.hours_text(ctx.control, venue_id)
    now = guards.clock()
    local = now.astimezone(ZoneInfo(tz))
    if schedule is None:
        click.echo(f"hours:      none set: {venue_id} never counts as trading (time zone {tz})")
        return
    click.echo(f"time zone:  {tz} (now {local:%a %Y-%m-%d %H:%M})")
    click.echo(f"week:       {schedule.describe_week()}")
    for day, spec in dated.items():
        click.echo(f"exception:  {day} {spec}")
    trading = schedule.trading(now, tz)
    change = schedule.next_change(now, tz)
    state = click.style("trading", fg="yellow", bold=True) if trading else click.style("not trading", fg="green")
    until = f" until {change.astimezone(ZoneInfo(tz)):%a %Y-%m-%d %H:%M}" if change else ""
    click.echo(f"now:        {state}{until}")


_SENTINEL = "__unchanged__"


class LimitValue(click.ParamType):
    """A whole number of at least 1, or `unlimited`/`none`."""

    name = "N|unlimited"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None or isinstance(value, int) or value == _SENTINEL:
            return value
        text = str(value).strip().lower()
        if text in ("unlimited", "none", "off"):
            return None
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or 'unlimited'", param, ctx)
        if number < 1:
            self.fail(f"{value!r} must be at least 1 (or 'unlimited')", param, ctx)
        return number


@click.command("limits")
@click.argument("venue_id")
@click.option("--trading-rows-per-s", type=LimitValue(), default=_SENTINEL, show_default=False,
              help="Rows read per second during trading hours (all workers together).")
@click.option("--trading-chunks", type=LimitValue(), default=_SENTINEL, show_default=False,
              help="Chunks running at once during trading hours.")
@click.option("--off-rows-per-s", type=LimitValue(), default=_SENTINEL, show_default=False,
              help="Rows per second outside trading hours.")
@click.option("--off-chunks", type=LimitValue(), default=_SENTINEL, show_default=False,
              help="Chunks at once outside trading hours.")
@click.option("--staff", "staff_code", metavar="CODE", help=STAFF_HELP)
def limits(venue_id: str, staff_code: str | None, **values: Any) -> None:
    """Show or set how hard a sync may press VENUE_ID's database, in and out of trading hours."""
    ctx = engine_ctx()
    venue = get_venue(ctx.control, venue_id)
    changes = {name: value for name, value in values.items() if value != _SENTINEL}
    if changes:
        login(CHANGE_PERMISSION, action_name(), venue.id, staff_code)
    current = rules.set_limits(ctx.control, venue.id, **changes) if changes else rules.get_limits(
        ctx.control, venue.id)
    if changes:
        click.secho(f"venue {venue.id}: limits updated", fg="green")

    def show(value: int | None, unit: str) -> str:
        return "unlimited" if value is None else f"{value:,} {unit}"

    suffix = "" if current.configured else "  (defaults)"
    click.echo(f"trading hours:  {show(current.trading_rows_per_s, 'rows/s')}, "
               f"{show(current.trading_chunks, 'chunk(s) at once')}{suffix}")
    click.echo(f"outside:        {show(current.off_rows_per_s, 'rows/s')}, "
               f"{show(current.off_chunks, 'chunk(s) at once')}")


def register(root: click.Group) -> None:
    venue_group.add_command(hours)
    venue_group.add_command(limits)

