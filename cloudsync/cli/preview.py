"""The warning shown before a full resync, and the confirmation it asks for (`--yes` skips the question)."""

from __future__ import annotations

import click

from cloudsync.access.preview import DEGRADED_SERVICES, preview_full_resync
from cloudsync.cli.common import confirm_or_abort, human_s
from cloudsync.context import Context


def confirm_full_resync(ctx: Context, venue_id: str, tables: list[str] | None, yes: bool) -> None:
    """Show tables, rows, estimated duration, degraded services and trading hours; ask to go on."""
    p = preview_full_resync(ctx, venue_id, tables)
    click.secho(f"Full resync of venue {p.venue.id} ({p.venue.name}):", bold=True)
    for t in p.tables:
        click.echo(f"  {t.name:<28} {t.rows:>14,} rows" + ("" if t.counted else "  (as of the last resync)"))
    if p.estimate_s is not None and p.rows_per_s:
        estimate = f"about {human_s(p.estimate_s)} at {p.rows_per_s:,.0f} rows/s (throughput of earlier jobs)"
    else:
        estimate = "unknown (no earlier finished job to measure throughput from)"
    click.echo(f"  {len(p.tables)} tables, {p.rows_total:,} rows; estimated duration {estimate}")
    click.secho(f"  While it runs the venue's cloud services are degraded: {', '.join(DEGRADED_SERVICES)}.",
                fg="yellow")
    if p.trading is None:
        click.echo("  Trading hours: unknown (no trading-hours schedule available)")
    elif p.trading:
        click.secho("  The venue is TRADING now: prefer a resync outside trading hours (starting one now needs "
                    "--during-trading).", fg="red", bold=True)
    else:
        click.echo("  The venue is outside its trading hours now.")
    confirm_or_abort("Start the full resync?", yes)
